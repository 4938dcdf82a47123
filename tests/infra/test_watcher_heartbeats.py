"""Dead-watcher detection: an alarm per watcher on the ticks it completes, breaching when they stop; and the
health probe's bound, as the stack sets it."""

from __future__ import annotations

import pytest

from drcore.core.config import EnvVar
from drcore.core.controller_settings import TICK_RESERVE_SECONDS
from tests.infra.support import Synthesized, logical_id

WATCHERS = ("health_watcher.handler.handler", "performance_watcher.handler.handler")


def _function(synth: Synthesized, handler: str) -> dict:
    return synth.resources[logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)]["Properties"]


def _heartbeat_alarm(synth: Synthesized, service: str) -> dict:
    alarms = [resource["Properties"] for resource in synth.resources.values()
              if resource["Type"] == "AWS::CloudWatch::Alarm"
              and resource["Properties"].get("Dimensions") == [{"Name": "service", "Value": service}]]
    assert len(alarms) == 1, alarms
    return alarms[0]


def _tick_rule(synth: Synthesized) -> dict:
    (rule,) = [resource["Properties"] for resource in synth.resources.values()
               if resource["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in resource["Properties"]
               and len(resource["Properties"]["Targets"]) == 2]
    return rule


@pytest.mark.parametrize("handler", WATCHERS)
def test_each_watcher_has_a_heartbeat_alarm_that_breaches_when_its_ticks_stop(synth: Synthesized, handler: str):
    # Given a watcher, and the service name its Powertools metrics carry as their "service" dimension
    service = _function(synth, handler)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    # When the stack is synthesized
    alarm = _heartbeat_alarm(synth, service)
    # Then an alarm of its own counts the ticks it completed, per tick interval, in the controller's namespace
    assert alarm["AlarmName"] == f"apilados-pipeline-ingest-{service}-heartbeat"
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("ApiladosDR", "Ticks", "Sum")
    assert _tick_rule(synth)["ScheduleExpression"] == "rate(1 minute)" and alarm["Period"] == 60
    # And fires when five ticks in a row are missing: no datapoint counts as breaching
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 5
    assert alarm["TreatMissingData"] == "breaching"
    # And alerts the alert topic (severity 2 to 4), as the other alarms on the controller's own health do
    alert_topic = logical_id(synth.resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    assert alarm["AlarmActions"] == [{"Ref": alert_topic}]
    assert "completed no scheduled tick in 5 minutes" in alarm["AlarmDescription"]


def test_heartbeat_alarms_follow_the_namespace_and_the_protected_function(tuned: Synthesized):
    for handler in WATCHERS:
        service = _function(tuned, handler)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        alarm = _heartbeat_alarm(tuned, service)
        assert alarm["Namespace"] == "OrdersDR"
        assert alarm["AlarmName"] == f"orders-api-{service}-heartbeat"


@pytest.mark.parametrize("handler", WATCHERS)
def test_the_probe_timeout_leaves_the_tick_its_reserve_of_the_watchers_timeout(synth: Synthesized, handler: str):
    # Given a watcher's function / Then its environment carries the probe's timeout, which leaves the rest of the
    # tick its reserve within the function's own timeout
    properties = _function(synth, handler)
    timeout = int(properties["Environment"]["Variables"][EnvVar.HEALTH_PROBE_TIMEOUT_SECONDS])
    assert timeout == 10
    assert timeout + TICK_RESERVE_SECONDS <= properties["Timeout"] == 30


def test_the_probe_timeout_follows_the_settings(tuned: Synthesized):
    variables = _function(tuned, WATCHERS[0])["Environment"]["Variables"]
    assert variables[EnvVar.HEALTH_PROBE_TIMEOUT_SECONDS] == "4"
