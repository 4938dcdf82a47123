"""S3 replication, which moto does not do, filled in moto's own backends (one of the fills embedded/moto_gaps.py
lists and applies), so that the controller's code path is S3's.

What moto lacks, and what the fill does instead:

- GetBucketReplication: moto answers every rule with `Filter {"Prefix": ""}` and DeleteMarkerReplication
  Disabled, whatever was put. Here it answers the configuration as it was put, as S3 does.
- PutBucketReplication: moto checks only the source bucket's versioning. Here it also refuses what S3 refuses
  (InvalidRequest): a destination bucket that does not exist or is not versioned, rule IDs used twice, V1 rules
  (no Filter) beside V2 rules, a V2 rule without Priority or DeleteMarkerReplication, two V2 rules with one
  priority, delete-marker replication with a tag filter, Replication Time Control without metrics.
- Replication itself: moto copies nothing and reports no ReplicationStatus. Here a version written while an
  enabled rule's prefix covers its key is PENDING (HeadObject and GetObject answer `x-amz-replication-status`),
  then copied to the destination of the highest-priority matching rule of each destination bucket: same key,
  same version id, body, metadata, tags and last-modified time, status REPLICA there; the source's version
  becomes COMPLETED, or FAILED where the copy cannot be made. Delete markers replicate under V1 rules and V2
  rules with DeleteMarkerReplication Enabled (never under a tag filter). Versions written before a rule existed
  are not replicated, as in S3. Tag filters are decided when the replicator first looks at a version (moto tags an
  object after writing it).
- Asynchrony: S3 replicates in the background. Here the replicator catches up whenever S3 is read (an object, a
  listing) or the metrics are, replicating every version older than `lag`, except the newest `backlog` ones; so
  whatever a test or the controller observes is what an asynchronous replicator with that lag would have
  produced, without a thread. Versions of the keys in `held_keys` stay in flight until they are taken out of it.
- Replication metrics: S3 publishes them per rule whose Metrics are enabled (namespace AWS/S3, dimensions
  SourceBucket, DestinationBucket, RuleId, in the source's region): here, whenever CloudWatch is read, the datapoint
  of the current minute is written: OperationsPendingReplication, BytesPendingReplication, ReplicationLatency (the
  oldest pending version's age, or the slowest replication of the minute) and OperationsFailedReplication.

Each replica of an object is told to `replica_listeners` as it is written: S3 notifies the destination bucket of it
(embedded/s3_notifications.py says how).

Tests and the embedded world drive it through `ReplicationControl` (`behaviour.replication`): `lag`, `backlog`,
`held_keys`, `fail_keys`, and `catch_up()` to replicate now.
"""

from __future__ import annotations

import copy
import random
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from unittest import mock
from xml.etree import ElementTree

from moto.cloudwatch.models import CloudWatchBackend, MetricDatum, cloudwatch_backends
from moto.core.utils import utcnow
from moto.s3.exceptions import ReplicationConfigurationNotFoundError, S3ClientError
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend, s3_backends
from moto.s3.responses import S3Response

if TYPE_CHECKING:
    # The attribute the fill keeps on moto's keys, where the response headers read it.

    class ReplicatedKey(FakeKey):
        replication_status: str | None

S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
# A datapoint is written for the minute before this margin, so that a read at the turn of a minute (whose
# EndTime moto truncates to the second) still includes it.
_PUBLISH_MARGIN = timedelta(seconds=2)


class ReplicationConfigurationInvalid(S3ClientError):
    code = "InvalidRequest"


def _set_status(version: FakeKey | FakeDeleteMarker, status: str | None) -> None:
    """A key's replication status (S3 reports none for delete markers)."""
    if isinstance(version, FakeKey):
        cast("ReplicatedKey", version).replication_status = status


def _xml(parent: ElementTree.Element, parsed: dict[str, Any]) -> None:
    """Elements from moto's parse of the XML that was put (xmltodict's shape: repeated elements as lists)."""
    for name, value in parsed.items():
        if name.startswith("@"):
            continue
        for item in value if isinstance(value, list) else [value]:
            child = ElementTree.SubElement(parent, name)
            if isinstance(item, dict):
                _xml(child, item)
            elif item is not None:
                child.text = str(item)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _rules(configuration: dict[str, Any] | None) -> list[dict[str, Any]]:
    return _listed((configuration or {}).get("Rule"))


def _filter_of(rule: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A rule's key prefix and required tags, from the XML as parsed (empty elements parse as None)."""
    if "Filter" not in rule:
        return rule.get("Prefix") or "", {}
    found = rule.get("Filter") or {}
    part = found.get("And") or found
    tags = {str(tag.get("Key")): str(tag.get("Value") or "") for tag in _listed(part.get("Tag"))}
    return part.get("Prefix") or "", tags


def _destination(rule: dict[str, Any]) -> str:
    return str((rule.get("Destination") or {}).get("Bucket", "")).rsplit(":", 1)[-1]


def _status(rule: dict[str, Any], element: str, within: str | None = None) -> str | None:
    holder = (rule.get(within) or {}) if within else rule
    return (holder.get(element) or {}).get("Status")


def s3_refusals(backend: S3Backend, configuration: dict[str, Any]) -> list[str]:
    """What S3 answers InvalidRequest for in a PutBucketReplication (its documented rules)."""
    rules = _rules(configuration)
    refusals = []
    for rule in rules:
        bucket = backend.buckets.get(_destination(rule))
        if bucket is None:
            refusals.append(f"Destination bucket must exist: {_destination(rule)}")
        elif not bucket.is_versioned:
            refusals.append(f"Destination bucket must have versioning enabled: {_destination(rule)}")
        if "Filter" in rule:
            for element in ("Priority", "DeleteMarkerReplication"):
                if rule.get(element) is None:
                    refusals.append(f"{element} must be specified for this version of Cross Region Replication "
                                    "configuration schema")
            if _status(rule, "DeleteMarkerReplication") == "Enabled" and _filter_of(rule)[1]:
                refusals.append("Delete marker replication is not supported if any Tag filter is specified")
        if (_status(rule, "ReplicationTime", "Destination") == "Enabled"
                and _status(rule, "Metrics", "Destination") != "Enabled"):
            refusals.append("Replication Time Control requires Metrics to be enabled")
    ids = Counter(rule.get("ID") for rule in rules if rule.get("ID"))
    refusals += [f"Rule Id must be unique: {rule_id}" for rule_id, count in ids.items() if count > 1]
    if len({"Filter" in rule for rule in rules}) > 1:
        refusals.append("Rules of the V1 schema (no Filter) cannot be combined with V2 rules")
    priorities = Counter(int(rule["Priority"]) for rule in rules if "Filter" in rule and rule.get("Priority"))
    refusals += [f"Found two rules with priority {priority}" for priority, count in priorities.items() if count > 1]
    return refusals


@dataclass(eq=False)
class _InFlight:
    """A version (or delete marker) of a source bucket on its way to its destinations."""

    backend: S3Backend
    bucket: str
    version: FakeKey | FakeDeleteMarker
    candidates: list[dict[str, Any]]  # the enabled rules whose prefix covers its key, when it was written
    routes: dict[str, dict[str, Any]] | None = None  # destination bucket -> the rule replicating there (decided)

    @property
    def written_at(self) -> datetime:
        return self.version.last_modified

    @property
    def size(self) -> int:
        return self.version.size if isinstance(self.version, FakeKey) else 0


class ReplicationControl:
    """S3's replicator, as tests and the embedded world drive it."""

    def __init__(self) -> None:
        self.lag = timedelta(0)  # versions younger than this are still in flight
        self.backlog = 0  # the newest this-many in-flight versions stay in flight whatever their age
        self._failing: set[str] = set()
        self.held_keys: set[str] = set()  # versions of these keys stay in flight, whatever their age
        self._lock = threading.RLock()
        self._in_flight: list[_InFlight] = []
        self._sources: dict[tuple[int, str], tuple[S3Backend, str]] = {}  # buckets with a configuration
        self._failures: Counter[tuple[str, str, str]] = Counter()  # (source, destination, rule) -> since published
        self._slowest: dict[tuple[str, str, str], float] = {}  # seconds, of replications since published
        self._datapoints: dict[tuple[Any, ...], MetricDatum] = {}
        # Told of each replica written (backend, destination bucket, replica), as S3 notifies for it there.
        self.replica_listeners: list[Callable[[S3Backend, str, FakeKey], None]] = []

    def fail_keys(self, *keys: str) -> None:
        """Versions of these keys fail to replicate (FAILED), as a destination refusing them would make them."""
        self._failing.update(keys)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    # Hooks into moto's S3 backend

    def configured(self, backend: S3Backend, bucket: str) -> None:
        with self._lock:
            self._sources[(id(backend), bucket)] = (backend, bucket)

    def written(self, backend: S3Backend, bucket_name: str, version: FakeKey | FakeDeleteMarker) -> None:
        bucket = backend.buckets.get(bucket_name)
        configuration = getattr(bucket, "replication", None)
        if bucket is None or not configuration or not bucket.is_versioned:
            return
        candidates = [rule for rule in _rules(configuration) if rule.get("Status") == "Enabled"
                      and version.name.startswith(_filter_of(rule)[0])]
        if not candidates:
            return
        _set_status(version, "PENDING")
        with self._lock:
            self._in_flight.append(_InFlight(backend, bucket_name, version, candidates))

    # Replication

    def catch_up(self) -> int:
        """Replicate every in-flight version older than the lag (but the newest `backlog`); how many finished."""
        if not self._in_flight:  # the common case, every S3 read of a world without replication: no lock taken
            return 0
        with self._lock:
            now = utcnow()
            held = set(map(id, sorted(self._in_flight, key=lambda entry: entry.written_at)[-self.backlog:])) \
                if self.backlog else set()
            finished = 0
            for entry in list(self._in_flight):
                routes = self._routes(entry)
                if not routes:
                    self._in_flight.remove(entry)
                    _set_status(entry.version, None)
                    continue
                if id(entry) in held or entry.version.name in self.held_keys or now - entry.written_at < self.lag:
                    continue
                self._in_flight.remove(entry)
                if not self._still_there(entry):
                    continue  # deleted for good before it was replicated: nothing left to copy
                failed = [destination for destination, rule in routes.items() if not self._copy(entry, destination,
                                                                                                rule, now)]
                _set_status(entry.version, "FAILED" if failed else "COMPLETED")
                finished += 1
            return finished

    @staticmethod
    def _still_there(entry: _InFlight) -> bool:
        bucket = entry.backend.buckets.get(entry.bucket)
        return bucket is not None and any(version is entry.version
                                          for version in bucket.keys.getlist(entry.version.name, []))

    def _routes(self, entry: _InFlight) -> dict[str, dict[str, Any]]:
        if entry.routes is None:
            tags = entry.backend.tagger.get_tag_dict_for_resource(entry.version.arn) \
                if isinstance(entry.version, FakeKey) else {}
            routes: dict[str, dict[str, Any]] = {}
            for rule in sorted(entry.candidates, key=lambda rule: -int(rule.get("Priority") or 0)):
                required = _filter_of(rule)[1]
                marker_replicated = "Filter" not in rule or (
                    _status(rule, "DeleteMarkerReplication") == "Enabled" and not required)
                if isinstance(entry.version, FakeDeleteMarker) and not marker_replicated:
                    continue
                if all(tags.get(key) == value for key, value in required.items()):
                    routes.setdefault(_destination(rule), rule)
            entry.routes = routes
        return entry.routes

    def _copy(self, entry: _InFlight, destination: str, rule: dict[str, Any], now: datetime) -> bool:
        source = entry.version
        route = (entry.bucket, destination, str(rule.get("ID")))
        target = entry.backend.buckets.get(destination)
        if target is None or not target.is_versioned or source.name in self._failing:
            self._failures[route] += 1
            return False
        replica: FakeKey | FakeDeleteMarker
        if isinstance(source, FakeKey):
            copied = FakeKey(
                name=source.name, value=source.value, account_id=source.account_id, region_name=target.region_name,
                storage=(rule.get("Destination") or {}).get("StorageClass") or source.storage_class,
                # moto's etag property answers it quoted, and FakeKey quotes what it is given.
                etag=source.etag.strip('"'), is_versioned=True, version_id=source.version_id, bucket_name=destination,
                encryption=source.encryption, kms_key_id=source.kms_key_id, checksum_value=source.checksum_value,
                checksum_type=source.checksum_type)
            copied.set_metadata(dict(source.metadata))
            copied.last_modified = source.last_modified
            _set_status(copied, "REPLICA")
            entry.backend.tagger.copy_tags(source.arn, copied.arn)
            replica = copied
        else:
            replica = copy.copy(source)  # the same version id and time; it names the key it hides
        versions = [*target.keys.getlist(source.name, []), replica]
        target.keys.setlist(source.name, sorted(versions, key=lambda version: version.last_modified))
        if isinstance(replica, FakeKey):
            for listener in list(self.replica_listeners):
                listener(entry.backend, destination, replica)
        self._slowest[route] = max(self._slowest.get(route, 0.0), (now - entry.written_at).total_seconds())
        return True

    # Metrics

    def publish_metrics(self) -> None:
        """Write the current minute's replication datapoints of every rule with metrics enabled."""
        with self._lock:
            self.catch_up()
            now = utcnow()
            minute = (now - _PUBLISH_MARGIN).replace(second=0, microsecond=0)
            for backend, bucket_name in list(self._sources.values()):
                bucket = backend.buckets.get(bucket_name)
                if bucket is None or s3_backends[backend.account_id]["aws"] is not backend:
                    continue  # a world that is gone (moto's backends were reset)
                watch = cloudwatch_backends[backend.account_id][bucket.region_name]
                for rule in _rules(getattr(bucket, "replication", None)):
                    if _status(rule, "Metrics", "Destination") == "Enabled":
                        self._publish_rule(watch, bucket_name, rule, now, minute)

    def _publish_rule(self, watch: CloudWatchBackend, bucket: str, rule: dict[str, Any], now: datetime,
                      minute: datetime) -> None:
        route = (bucket, _destination(rule), str(rule.get("ID")))
        pending = [entry for entry in self._in_flight if entry.bucket == bucket
                   and self._routes(entry).get(route[1], {}).get("ID") == route[2]]
        ages = [(now - entry.written_at).total_seconds() for entry in pending]
        figures = {
            "OperationsPendingReplication": float(len(pending)),
            "BytesPendingReplication": float(sum(entry.size for entry in pending)),
            "ReplicationLatency": max([*ages, self._slowest.pop(route, 0.0)]),
            "OperationsFailedReplication": float(self._failures.pop(route, 0)),
        }
        dimensions = [{"Name": "SourceBucket", "Value": route[0]}, {"Name": "DestinationBucket", "Value": route[1]},
                      {"Name": "RuleId", "Value": route[2]}]
        for metric, value in figures.items():
            key = (id(watch), route, metric, minute)
            datum = self._datapoints.get(key)
            if datum is None:
                datum = self._datapoints[key] = MetricDatum("AWS/S3", metric, value, dimensions, minute)
                watch.metric_data.append(datum)
            elif metric == "OperationsFailedReplication":
                datum.value += value
            elif metric == "ReplicationLatency":
                datum.value = max(datum.value, value)
            else:
                datum.value = value


def _random_id() -> str:
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(30))


@contextmanager
def s3_replication_as_aws(control: ReplicationControl) -> Iterator[ReplicationControl]:
    """Apply the fill to moto's S3 and CloudWatch backends while the block runs."""

    def put_bucket_replication(self: S3Backend, bucket_name: str, replication: dict[str, Any]) -> None:
        replication["Rule"] = _rules(replication)
        refusals = s3_refusals(self, replication)
        if refusals:
            raise ReplicationConfigurationInvalid("; ".join(refusals))
        for rule in replication["Rule"]:
            rule.setdefault("ID", _random_id())  # S3 names a rule given without an ID
        self.get_bucket(bucket_name).replication = replication  # type: ignore[attr-defined]
        control.configured(self, bucket_name)

    def get_bucket_replication(self: S3Response) -> Any:
        self.data["Action"] = "GetBucketReplication"
        replication = self.backend.get_bucket_replication(self.bucket_name)
        if not replication:
            raise ReplicationConfigurationNotFoundError(bucket_name=self.bucket_name)
        root = ElementTree.Element("ReplicationConfiguration", xmlns=S3_XMLNS)
        _xml(root, replication)
        return 200, {"Content-Type": "application/xml"}, ElementTree.tostring(root, encoding="unicode")

    def response_dict(self: FakeKey) -> dict[str, Any]:
        headers: dict[str, Any] = original_response_dict.fget(self)  # type: ignore[attr-defined]
        status = getattr(self, "replication_status", None)
        if status:
            headers["x-amz-replication-status"] = status
        return headers

    def after(original: Callable[..., Any], hook: Callable[..., None]) -> Callable[..., Any]:
        def call(self: S3Backend, bucket_name: str, *args: Any, **kwargs: Any) -> Any:
            written = original(self, bucket_name, *args, **kwargs)
            hook(self, bucket_name, written)
            return written
        return call

    def caught_up(original: Callable[..., Any], catch_up: Callable[[], Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            catch_up()
            return original(*args, **kwargs)
        return call

    original_response_dict = FakeKey.response_dict
    with ExitStack() as patches:
        patch = patches.enter_context
        patch(mock.patch.object(S3Backend, "put_bucket_replication", put_bucket_replication))
        patch(mock.patch.object(S3Response, "get_bucket_replication", get_bucket_replication))
        patch(mock.patch.object(FakeKey, "response_dict", property(response_dict)))
        patch(mock.patch.object(S3Backend, "put_object", after(S3Backend.put_object, control.written)))
        patch(mock.patch.object(S3Backend, "_set_delete_marker", after(S3Backend._set_delete_marker, control.written)))
        for name in ("get_object", "head_object", "list_object_versions", "list_objects", "list_objects_v2"):
            patch(mock.patch.object(S3Backend, name, caught_up(getattr(S3Backend, name), control.catch_up)))
        for name in ("get_metric_data", "get_metric_statistics"):
            patch(mock.patch.object(CloudWatchBackend, name,
                                    caught_up(getattr(CloudWatchBackend, name), control.publish_metrics)))
        yield control
