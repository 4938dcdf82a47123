"""Fencing a returning region: the controller of a region that is not active stops its bucket from processing.

A failover whose primary could not be reached leaves the primary bucket's pipeline notification in place: the
primary may come back any moment and process every upload again, beside the secondary. So each tick of this
region's controller reads the region record (one consistent query of the state table, a global table); when the
record names another region active and this region's bucket still invokes this region's LIVE, the entry is
removed (merged out, every other entry kept: drcore.aws.pipeline_notification), journaled and alerted. A region
returning mid-failover thus stops processing on its first tick. The fence only ever removes: starting to process
again is a failback's decision, never a tick's.
"""

from __future__ import annotations

import secrets
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.alerts import Alert, AlertPublisher
from drcore.aws.pipeline_notification import BucketNotifications
from drcore.core.models import Cause, Clock, to_iso, utc_now
from drcore.rollback.outcome import Outcome
from drcore.state.region_record import RegionRecord
from drcore.state.store import ControllerStateStore

logger = Logger(child=True)


class RegionFence:
    def __init__(self, record: RegionRecord, notifications: BucketNotifications, lambda_client: Any,
                 store: ControllerStateStore, alerts: AlertPublisher, function_name: str, live_alias: str,
                 bucket: str, own_region: str, clock: Clock = utc_now) -> None:
        self._record = record
        self._notifications = notifications
        self._lambda = lambda_client
        self._store = store
        self._alerts = alerts
        self._function = function_name
        self._live = live_alias
        self._bucket = bucket
        self._region = own_region
        self._clock = clock

    def check(self) -> Outcome:
        current = self._record.current()
        active = current.active_region if current else self._record.primary_region
        if active == self._region:
            return Outcome("none", f"{self._region} is the active region")
        live_arn = str(self._lambda.get_alias(FunctionName=self._function, Name=self._live)["AliasArn"])
        change = self._notifications.remove(self._bucket, live_arn)
        if not change.changed:
            return Outcome("none", f"{active} is active and {self._bucket} does not invoke {live_arn}")
        at = to_iso(self._clock())
        epoch = current.epoch if current else 0
        detail = (f"the region record (epoch {epoch}) names {active} active: {self._bucket}'s notification to "
                  f"{live_arn} was removed so that {self._region} does not process uploads beside it")
        cause = Cause(kind="reconcile", summary=detail)
        self._store.append_journal(self._function, entry_id=f"fence-{secrets.token_hex(4)}", at=at, action="fence",
                                   cause=cause, result="removed" if change.ok else "removed, other entries lost",
                                   details={"bucket": self._bucket, "target": live_arn, "active_region": active,
                                            "epoch": epoch, "lost_entries": list(change.lost_entries)})
        self._alerts.publish(Alert(
            severity=1, brief=f"{self._region} fenced: {active} is the active region", occurred_at=at,
            impact=f"{self._region} no longer processes uploads to {self._bucket}", components=(
                self._function, self._bucket), status=detail,
            actions_taken=(f"removed the pipeline notification of {self._bucket} (other entries kept)",),
            next_steps=(f"fail back to {self._region} with the failback action once it is healthy",),
            event_type="region_fenced", function_name=self._function,
            facts={"active_region": active, "epoch": str(epoch)}))
        logger.warning("region fenced", extra={"bucket": self._bucket, "active_region": active, "epoch": epoch})
        return Outcome("fenced", detail, severity=1, facts={"bucket": self._bucket, "active_region": active})
