"""The automatic rollback's semantics under duplicates, reordering, concurrency and crashes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

import health_watcher.handler as health_watcher
import performance_watcher.handler as performance_watcher
from drcore.core.models import ControllerState
from drcore.rollback.controller import AliasController
from drcore.rollback.watcher_events import signal_from_alarm_action
from embedded.aws_events import alarm_action_event, alarm_state_change_event, scheduled_event
from embedded.sample_system import SampleSystem
from tests.support import CallRecorder


def deploy_bad_version(system: SampleSystem) -> None:
    """What a deployment pipeline does: move LIVE to the new (bad) version."""
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])


def rollback_entries(controller: AliasController, function_name: str) -> list[dict]:
    return [entry for entry in controller._store.journal(function_name) if entry["action"] == "rollback"]


def alarm(system: SampleSystem, kind: str, state: str, at: datetime):
    return signal_from_alarm_action(alarm_action_event(system.alarms[kind], state, at, system.function_name))


def test_the_same_alarm_event_delivered_100_times_rolls_back_once(system, controller, invoke_watcher):
    # Given LIVE on the bad version, and its errors alarm firing once
    deploy_bad_version(system)
    changed_at = datetime.now(UTC)
    as_action = alarm_action_event(system.alarms["errors"], "ALARM", changed_at, system.function_name)
    as_rule = alarm_state_change_event(system.alarms["errors"], "ALARM", changed_at, system.function_name)
    # When the transition arrives 100 times, as alarm action and through EventBridge
    results = [invoke_watcher(health_watcher, as_action if n % 2 else as_rule) for n in range(100)]
    # Then one rollback, one journal entry, one alert
    actions = [result["outcome"]["action"] for result in results]
    assert actions.count("rolled_back") == 1 and actions.count("duplicate") == 99
    assert system.alias_version("LIVE") == system.versions["good"]
    assert len(rollback_entries(controller, system.function_name)) == 1
    alerts = system.drain_alerts()
    assert [alert["severity"] for alert in alerts] == [2]
    assert alerts[0]["subject"].startswith("[SEVERITY 2] Apilados Pipeline Incident - ")


def test_an_event_older_than_the_last_processed_for_its_alarm_is_ignored(system, controller, clock):
    # Given the candidate baking and its errors alarm seen going OK at t2
    deploy_bad_version(system)
    t1 = clock.advance(60)
    t2 = clock.advance(60)
    assert controller.on_alarm(alarm(system, "errors", "OK", t2)).action == "recorded"
    # When the ALARM transition of t1 arrives late
    outcome = controller.on_alarm(alarm(system, "errors", "ALARM", t1))
    # Then it is ignored: LIVE stays on the candidate
    assert outcome.action == "duplicate"
    assert system.alias_version("LIVE") == system.versions["bad"]
    assert controller.record().state is ControllerState.BAKING


def test_health_and_performance_watchers_firing_together_roll_back_once(system, controller, invoke_watcher,
                                                                        monkeypatch):
    # Given the candidate on LIVE, known to the controller
    deploy_bad_version(system)
    controller.record()
    now = datetime.now(UTC)
    events = [
        (health_watcher, alarm_action_event(system.alarms["errors"], "ALARM", now, system.function_name)),
        (health_watcher, alarm_state_change_event(system.alarms["health-probe"], "ALARM", now, system.function_name)),
        (performance_watcher, alarm_action_event(system.alarms["p99-duration"], "ALARM", now, system.function_name)),
        (performance_watcher,
         alarm_state_change_event(system.alarms["avg-duration"], "ALARM", now, system.function_name)),
    ]
    for name, value in system.environment().items():  # set once, before the threads start
        monkeypatch.setenv(name, value)
    start = threading.Barrier(len(events))
    results: list[dict] = []

    def fire(module, event):
        start.wait()
        results.append(invoke_watcher(module, event))

    # When all four fire at the same moment
    threads = [threading.Thread(target=fire, args=pair) for pair in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one rolled back; the others saw it done and did nothing more
    actions = sorted(result["outcome"]["action"] for result in results)
    assert actions.count("rolled_back") == 1, actions
    assert set(actions) <= {"rolled_back", "attributed"}
    assert len(rollback_entries(controller, system.function_name)) == 1
    assert [alert["severity"] for alert in system.drain_alerts()] == [2]


def test_alarm_still_firing_from_the_rolled_back_version_causes_nothing_more(system, controller, clock):
    # Given a rollback of the bad version at t0
    deploy_bad_version(system)
    assert controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60))).action == "rolled_back"
    system.drain_alerts()
    system.set_alarm("errors", "ALARM")
    # When another alarm transitions within the settle time, and the tick reads alarms still in ALARM
    assert controller.on_alarm(alarm(system, "avg-duration", "ALARM", clock.advance(120))).action == "attributed"
    assert controller.reconcile()[-1].action == "settling"
    # Then no second action and no severity 1
    assert system.alias_version("LIVE") == system.versions["good"]
    assert system.drain_alerts() == []
    assert controller.record().state is ControllerState.ROLLED_BACK


def test_fresh_alarm_for_stable_freezes_with_severity_1_and_does_not_flap(system, controller, clock):
    # Given a rollback that has settled
    deploy_bad_version(system)
    controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    clock.advance(700)
    assert controller.reconcile()[-1].action == "settled"
    system.drain_alerts()
    # When STABLE's own errors alarm fires
    outcome = controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    # Then severity 1 on the emergency topic and automation frozen, LIVE untouched
    assert outcome.action == "frozen" and outcome.severity == 1
    alerts = system.drain_alerts()
    assert [(alert["severity"], alert["topic"]) for alert in alerts] == [(1, system.emergency_topic_arn)]
    assert controller.record().state is ControllerState.FROZEN
    # And more alarms and ticks change nothing and alert no more
    system.set_alarm("throttles", "ALARM")
    assert controller.on_alarm(alarm(system, "throttles", "ALARM", clock.advance(60))).action == "held"
    assert controller.reconcile()[-1].action == "held"
    assert system.alias_version("LIVE") == system.versions["good"]
    assert system.drain_alerts() == []


def test_stable_still_failing_after_the_settle_time_freezes(system, controller, clock):
    deploy_bad_version(system)
    controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    system.set_alarm("errors", "ALARM")  # never recovers: STABLE fails too
    clock.advance(601)
    assert controller.reconcile()[-1].action == "frozen"
    assert [alert["severity"] for alert in system.drain_alerts()] == [2, 1]


def test_alarm_with_nothing_to_roll_back_to_is_severity_1(system, controller, clock):
    # Given LIVE on STABLE, steady
    controller.record()
    # When an alarm of LIVE fires: STABLE itself fails
    outcome = controller.on_alarm(alarm(system, "health-probe", "ALARM", clock.advance(60)))
    assert outcome.action == "frozen"
    assert [alert["severity"] for alert in system.drain_alerts()] == [1]


def test_a_rolled_back_version_is_never_promoted_automatically(system, controller, clock):
    # Given the bad version rolled back (quarantined)
    deploy_bad_version(system)
    controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    assert controller.record().quarantined == (system.versions["bad"],)
    # When a pipeline redeploys it to LIVE, the tick reverts it
    deploy_bad_version(system)
    clock.advance(900)
    assert controller.reconcile()[0].action == "reverted"
    assert system.alias_version("LIVE") == system.versions["good"]
    # And released by force with a reason, it bakes but never promotes itself
    from drcore.core.models import Cause
    forced = Cause(kind="manual", summary="retry", requested_by="bob", reason="hotfix")
    controller.release(system.versions["bad"], forced, force=True)
    for kind in system.alarms:
        system.set_alarm(kind, "OK")
    clock.advance(4000)
    outcome = controller.reconcile()[-1]
    assert outcome.action == "baking" and "quarantined" in outcome.detail
    assert system.alias_version("STABLE") == system.versions["good"]


class Crash(RuntimeError):
    """Stands for the invocation dying (timeout, out of memory) at one step."""


CRASH_POINTS = {
    "before the flip": ("_aliases", "point"),
    "after the flip": ("_store", "append_journal"),
    "after the journal": ("_alerts", "publish"),
    "after the alert": ("_store", "replace"),
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_between_any_two_steps_is_completed_by_the_next_tick(system, controller, clock, monkeypatch, point):
    # Given the bad version baking and an alarm that starts a rollback
    deploy_bad_version(system)
    controller.record()
    collaborator, method = CRASH_POINTS[point]
    target = getattr(controller, collaborator)
    original = getattr(target, method)
    monkeypatch.setattr(target, method, lambda *a, **k: (_ for _ in ()).throw(Crash(point)))
    # When the invocation crashes at that point
    with pytest.raises(Crash):
        controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    monkeypatch.setattr(target, method, original)
    # And the next tick comes once the rollback had time to finish
    clock.advance(120)
    outcomes = controller.reconcile()
    # Then the rollback is complete: LIVE on STABLE, quarantined, journaled once, alerted
    assert outcomes[0].action == "rollback_completed"
    assert system.alias_version("LIVE") == system.versions["good"]
    record = controller.record()
    assert record.pending_rollback is None and record.candidate is None
    assert record.quarantined == (system.versions["bad"],)
    assert len(rollback_entries(controller, system.function_name)) == 1
    severities = [alert["severity"] for alert in system.drain_alerts()]
    # a crash after the alert went out may repeat it (at-least-once); never none
    assert severities == ([2, 2] if point == "after the alert" else [2])


def test_a_tick_does_not_race_a_rollback_still_in_flight(system, controller, clock, monkeypatch):
    deploy_bad_version(system)
    controller.record()
    monkeypatch.setattr(controller._aliases, "point", lambda *a, **k: (_ for _ in ()).throw(Crash("slow")))
    with pytest.raises(Crash):
        controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    assert controller.reconcile()[0].action == "waiting"


def test_a_missed_alarm_edge_is_acted_on_by_the_tick(system, controller, clock):
    # Given the candidate baking, and its alarm went to ALARM but no event reached the watcher
    deploy_bad_version(system)
    controller.record()
    clock.advance(60)
    system.set_alarm("throttles", "ALARM")
    # When the tick reads the alarm states, Then it rolls back
    outcomes = controller.reconcile()
    assert outcomes[-1].action == "rolled_back"
    assert system.alias_version("LIVE") == system.versions["good"]


@pytest.mark.parametrize("event, reason", [
    ({"alarmData": {"alarmName": "x"}, "source": "aws.cloudwatch"}, "alarmData"),
    ({"detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": "x"}}, "detail"),
    ({"detail-type": "Object Created", "source": "aws.s3"}, "not an alarm action"),
    ({"hello": "world"}, "not an alarm action"),
    ([], "expected a JSON object"),
    ({"alarmData": {"alarmName": "x", "state": {"value": "ALARM", "timestamp": "yesterday"}}}, "alarmData"),
])
def test_unknown_or_incomplete_events_change_nothing_and_do_not_raise(system, invoke_watcher, event, reason):
    deploy_bad_version(system)
    result = invoke_watcher(health_watcher, event)
    assert result["status"] == "ignored" and reason in result["reason"]
    assert system.alias_version("LIVE") == system.versions["bad"]


def test_an_alarm_of_another_function_changes_nothing(system, invoke_watcher):
    deploy_bad_version(system)
    event = alarm_action_event("billing-api-LIVE-errors", "ALARM", datetime.now(UTC), "billing-api")
    result = invoke_watcher(health_watcher, event)
    assert result["status"] == "ignored" and "billing-api-LIVE-errors" in result["reason"]
    assert system.alias_version("LIVE") == system.versions["bad"]


def test_an_aws_error_on_the_critical_path_raises_so_lambda_retries(system, invoke_watcher):
    deploy_bad_version(system)
    event = alarm_action_event(system.alarms["errors"], "ALARM", datetime.now(UTC), system.function_name)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        invoke_watcher(health_watcher, event, DR_STATE_TABLE_NAME="no-such-table")


def test_the_rollback_makes_one_aws_call_before_the_flip(system, controller, clock, calls: CallRecorder):
    deploy_bad_version(system)
    controller.record()
    calls.calls.clear()
    controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    assert calls.calls.index("UpdateAlias") == 1
    assert calls.calls[0] == "UpdateItem"


def test_a_rollback_reads_stable_only_when_a_promotion_of_its_candidate_began(system, controller, clock,
                                                                              calls: CallRecorder):
    # Given a bad version released and never promoted
    deploy_bad_version(system)
    controller.record()
    calls.calls.clear()
    # When its alarm fires, Then after the flip come the journal, the alert and the record, and no read of STABLE
    controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    after_flip = calls.calls[calls.calls.index("UpdateAlias") + 1:]
    assert "GetAlias" not in after_flip, after_flip


def test_stable_moved_by_hand_onto_a_rolled_back_version_is_reverted_by_the_tick(system, controller, clock):
    # Given a bad version released, and someone moving STABLE onto it by hand (no promotion began)
    deploy_bad_version(system)
    controller.record()
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="STABLE",
                                          FunctionVersion=system.versions["bad"])
    # When its alarm fires: LIVE goes back to the version the record calls STABLE at once
    assert controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60))).action == "rolled_back"
    assert system.alias_version("LIVE") == system.versions["good"]
    # Then the next tick takes STABLE off the quarantined version
    controller.reconcile()
    assert system.alias_version("STABLE") == system.versions["good"]
    assert controller.record().stable_version == system.versions["good"]


def test_the_health_tick_runs_through_the_real_handler(system, invoke_watcher, versions_behaviour):
    versions_behaviour.set_failing(system.function_name, system.versions["bad"])
    deploy_bad_version(system)
    result = invoke_watcher(health_watcher, scheduled_event(datetime.now(UTC)))
    # The versions LIVE and STABLE serve are published for the dashboard, with the function as only dimension
    cloudwatch = system.clients["cloudwatch"]
    for name, version in (("LiveVersion", 2.0), ("StableVersion", 1.0)):
        metric = cloudwatch.list_metrics(Namespace="ApiladosDR", MetricName=name)["Metrics"]
        assert metric[0]["Dimensions"] == [{"Name": "FunctionName", "Value": system.function_name}]
        stats = cloudwatch.get_metric_statistics(
            Namespace="ApiladosDR", MetricName=name, Dimensions=metric[0]["Dimensions"], Statistics=["Maximum"],
            Period=60, StartTime=datetime.now(UTC) - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=1))
        assert [point["Maximum"] for point in stats["Datapoints"]] == [version]
    probe = result["outcomes"][0]
    assert result["status"] == "ticked" and probe["action"] == "probed", probe
    assert probe["facts"]["healthy"] is False, probe
    assert list(probe["facts"]["versions"]) == [system.versions["bad"]]


def crash_at(monkeypatch, target, method: str, point: str):
    """Make `target.method` kill the invocation; returns the original, to put back."""
    original = getattr(target, method)
    monkeypatch.setattr(target, method, lambda *a, **k: (_ for _ in ()).throw(Crash(point)))
    return original


def rollback_dying_at(system, controller, clock, monkeypatch, target, method: str, point: str) -> None:
    """LIVE on the bad version, its errors alarm, and the rollback it starts killed at `target.method`."""
    deploy_bad_version(system)
    controller.record()
    original = crash_at(monkeypatch, target, method, point)
    with pytest.raises(Crash):
        controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    monkeypatch.setattr(target, method, original)


def test_a_freeze_that_crashes_before_its_record_has_alerted_and_the_tick_freezes(system, controller, clock,
                                                                                   monkeypatch):
    # Given LIVE on STABLE, steady, and STABLE's errors alarm firing
    controller.record()
    system.set_alarm("errors", "ALARM")
    # When the watcher dies just before writing the frozen record
    original = crash_at(monkeypatch, controller._store, "replace", "before the record")
    with pytest.raises(Crash):
        controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    monkeypatch.setattr(controller._store, "replace", original)
    # Then the severity-1 alert and the journal entry went out already
    assert [alert["severity"] for alert in system.drain_alerts()] == [1]
    assert [entry["action"] for entry in controller.journal()][:1] == ["freeze"]
    # And the tick, reading the alarm still in ALARM, freezes (alerting again: at least once, never lost)
    assert controller.reconcile()[-1].action == "frozen"
    assert controller.record().state is ControllerState.FROZEN
    assert [alert["severity"] for alert in system.drain_alerts()] == [1]


def test_a_rollback_takes_stable_off_a_version_whose_promotion_crashed(system, controller, clock, monkeypatch):
    # Given the fix released, its promotion dead after moving STABLE, before its journal and record
    from drcore.core.models import Cause
    operator = Cause(kind="manual", summary="release", requested_by="a", reason="r")
    controller.release(system.versions["fix"], operator)
    original = crash_at(monkeypatch, controller._store, "append_journal", "promotion")
    with pytest.raises(Crash):
        controller.promote(operator)
    monkeypatch.setattr(controller._store, "append_journal", original)
    assert system.alias_version("STABLE") == system.versions["fix"]
    # When the fix's errors alarm fires before a tick could finish the promotion
    outcome = controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    # Then LIVE and STABLE are both back on the good version, and the fix is quarantined
    assert outcome.action == "rolled_back"
    assert system.alias_version("LIVE") == system.versions["good"]
    assert system.alias_version("STABLE") == system.versions["good"]
    record = controller.record()
    assert record.stable_version == system.versions["good"] and record.quarantined == (system.versions["fix"],)
    assert rollback_entries(controller, system.function_name)[0]["details"]["stable_restored_from"] == \
        system.versions["fix"]


def test_no_release_while_a_rollback_is_in_flight(system, controller, clock, monkeypatch):
    # Given a rollback of the bad version that died after its flip
    rollback_dying_at(system, controller, clock, monkeypatch, controller._store, "append_journal", "after the flip")
    # When an operator releases the fix before the tick finished the rollback, Then it is refused
    from drcore.core.errors import InvalidRequest
    from drcore.core.models import Cause
    operator = Cause(kind="manual", summary="release", requested_by="a", reason="r")
    with pytest.raises(InvalidRequest, match="rollback is in flight"):
        controller.release(system.versions["fix"], operator)
    # And once the tick finished it, the release goes through and is not rolled back by it
    clock.advance(120)
    assert controller.reconcile()[0].action == "rollback_completed"
    assert controller.release(system.versions["fix"], operator).action == "released"
    assert system.alias_version("LIVE") == system.versions["fix"]
    assert controller.record().quarantined == (system.versions["bad"],)


def test_finishing_a_crashed_rollback_quarantines_what_its_flip_found_on_live(system, controller, clock,
                                                                               monkeypatch):
    # Given the bad version baking, then a pipeline moving LIVE to the fix behind the controller's back
    deploy_bad_version(system)
    controller.record()
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["fix"])
    # When a rollback flips LIVE off the fix (its RevisionId refused, LIVE re-read), journals both, and dies
    original = crash_at(monkeypatch, controller._alerts, "publish", "after the journal")
    with pytest.raises(Crash):
        controller.on_alarm(alarm(system, "errors", "ALARM", clock.advance(60)))
    monkeypatch.setattr(controller._alerts, "publish", original)
    # Then the tick that finishes it, which finds LIVE on STABLE already, quarantines both all the same
    clock.advance(120)
    assert controller.reconcile()[0].action == "rollback_completed"
    assert controller.record().quarantined == (system.versions["bad"], system.versions["fix"])


def test_a_flip_that_finishing_a_rollback_makes_again_is_journaled_as_its_own_change(system, controller, clock,
                                                                                     monkeypatch):
    # Given a rollback of the bad version that journaled its flip and died before its record (a model run found it)
    rollback_dying_at(system, controller, clock, monkeypatch, controller._alerts, "publish", "after the journal")
    # And then a pipeline moving LIVE to the fix behind the controller's back
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["fix"])
    # When the tick finishes the rollback, moving LIVE off the fix
    clock.advance(120)
    assert controller.reconcile()[0].action == "rollback_completed"
    # Then that flip is journaled too, from the version it moved LIVE off, and both versions are quarantined
    flips = [(entry["from_version"], entry["to_version"])
             for entry in rollback_entries(controller, system.function_name)]
    assert sorted(flips) == sorted([(system.versions["bad"], system.versions["good"]),
                                    (system.versions["fix"], system.versions["good"])])
    assert system.alias_version("LIVE") == system.versions["good"]
    assert controller.record().quarantined == (system.versions["bad"], system.versions["fix"])
    # And a tick after that journals nothing more
    clock.advance(120)
    controller.reconcile()
    assert len(rollback_entries(controller, system.function_name)) == 2


def test_two_changes_of_a_kind_in_one_millisecond_are_both_journaled(system, controller):
    from drcore.core.models import Cause
    cause = Cause(kind="reconcile", summary="test")
    controller.record()
    before = len(controller.journal())
    controller._operations.journal("adopt", cause, "first")
    controller._operations.journal("adopt", cause, "second")
    assert len(controller.journal()) == before + 2
