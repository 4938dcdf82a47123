"""What a bucket restore changes, decided by content from the two states alone: no AWS, no moto."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from drcore.restore.bucket_diff import DesiredObject, ListedVersion, content_diff, state_at

TARGET = "apilados-production-data"
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def sha256(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def desired(key: str, etag: str, size: int = 10, *, version_id: str = "v1", checksum: str | None = None,
            archived: bool = False) -> DesiredObject:
    return DesiredObject(key=key, version_id=version_id, etag=etag, size=size, home_bucket=TARGET, from_store=True,
                         content_key=None if archived else f"content/etag/{etag}-{size}", archived=archived,
                         checksum={"algorithm": "SHA256", "value": checksum} if checksum else None,
                         last_modified="2026-11-26T11:00:00Z")


def listed(key: str, etag: str, size: int = 10, *, version_id: str = "v9", at: datetime = NOON,
           latest: bool = True, delete_marker: bool = False) -> ListedVersion:
    return ListedVersion(key, version_id, etag, size, at, "STANDARD", latest, delete_marker)


def never_asked(pairs: list[tuple[DesiredObject, ListedVersion]]) -> list[bool]:
    assert not pairs, "the listing decides these without a HeadObject"
    return []


def test_the_listing_decides_by_version_or_by_what_the_apply_wrote_and_looks_at_the_same_etag_elsewhere():
    # Given a desired state and a target holding: the same version, the same ETag and size under another
    # version, a version the plan's apply wrote, other content, nothing, and a key not desired
    wanted = {"same-version": desired("same-version", '"a"', version_id="v1"),
              "same-etag": desired("same-etag", '"b"'),
              "written": desired("written", '"c"'),
              "changed": desired("changed", '"d"'),
              "missing": desired("missing", '"e"')}
    current = {"same-version": listed("same-version", '"other"', version_id="v1"),
               "same-etag": listed("same-etag", '"b"'),
               "written": listed("written", '"kms-etag"', version_id="v7"),
               "changed": listed("changed", '"not-d"', size=11),
               "extra": listed("extra", '"x"')}
    asked: list[str] = []

    def same_headers(pairs: list[tuple[DesiredObject, ListedVersion]]) -> list[bool]:
        asked.extend(have.key for _, have in pairs)
        return [True for _ in pairs]

    # When they are compared
    diff = content_diff(wanted, current, TARGET, {"written": {("v7", '"kms-etag"')}}, same_headers)
    # Then only the same ETag under another version is looked at (its headers may differ: one HeadObject)
    assert asked == ["same-etag"]
    # And only the changed and the missing are copied, and the extra key removed
    assert sorted(entry.key for entry in diff.copy) == ["changed", "missing"]
    assert (diff.missing, diff.changed, diff.unchanged, diff.remove) == (1, 1, 3, ["extra"])


def test_the_same_etag_under_another_version_is_copied_when_the_look_finds_it_differs():
    # Given the desired body under another version whose HeadObject shows other headers
    wanted = {"k": desired("k", '"a"')}
    current = {"k": listed("k", '"a"')}
    # When compared, Then it is copied as changed
    diff = content_diff(wanted, current, TARGET, {}, lambda pairs: [False for _ in pairs])
    assert ([entry.key for entry in diff.copy], diff.changed, diff.unchanged) == (["k"], 1, 0)


def test_a_null_version_id_alone_proves_nothing():
    diff = content_diff({"k": desired("k", '"a"', version_id="null")}, {"k": listed("k", '"b"', version_id="null")},
                        TARGET, {}, never_asked)
    assert [entry.key for entry in diff.copy] == ["k"] and diff.changed == 1


def test_same_size_with_another_etag_is_decided_by_the_full_object_checksum():
    # Given two keys of the desired size under other ETags (SSE-KMS), one holding the desired body
    wanted = {"same": desired("same", '"a"', checksum=sha256(b"body")),
              "other": desired("other", '"b"', checksum=sha256(b"body"))}
    current = {"same": listed("same", '"kms-1"'), "other": listed("other", '"kms-2"')}
    asked: list[str] = []

    def same_checksums(pairs: list[tuple[DesiredObject, ListedVersion]]) -> list[bool]:
        asked.extend(have.key for _, have in pairs)
        return [have.key == "same" for _, have in pairs]

    # When they are compared, Then the checksum is asked for both and decides
    diff = content_diff(wanted, current, TARGET, {}, same_checksums)
    assert sorted(asked) == ["other", "same"]
    assert [entry.key for entry in diff.copy] == ["other"] and diff.unchanged == 1


def test_an_archived_desired_object_is_reported_not_copied():
    diff = content_diff({"cold": desired("cold", '"a"', archived=True)}, {}, TARGET, {}, never_asked)
    assert (diff.copy, diff.archived, diff.changed) == ([], ["cold"], 0) and diff.missing == 1


def test_the_state_at_a_moment_takes_each_keys_latest_version_or_delete_marker_up_to_it():
    # Given a snapshot of two keys, and a history after it: one key rewritten, one deleted, one added,
    # and a write after the moment asked for
    snapshot = {"kept": desired("kept", '"k"', version_id="k1"), "gone": desired("gone", '"g"', version_id="g1")}
    moment = NOON + timedelta(hours=1)
    history = [listed("kept", '"k"', version_id="k1", at=NOON - timedelta(hours=2), latest=False),
               listed("kept", '"k2"', version_id="k2", at=NOON, latest=False),
               listed("kept", '"k3"', version_id="k3", at=moment + timedelta(minutes=1)),
               listed("gone", '"g"', version_id="g1", at=NOON - timedelta(hours=2), latest=False),
               listed("gone", "", version_id="d1", at=NOON, delete_marker=True),
               listed("new", '"n"', version_id="n1", at=NOON)]
    # When the state at the moment is derived
    state, changed = state_at(TARGET, snapshot, history, moment)
    # Then it holds the rewritten and the added key from the history, and not the deleted one
    assert {key: (item.version_id, item.from_store) for key, item in state.items()} == {
        "kept": ("k2", False), "new": ("n1", False)}
    assert changed == 3


def test_on_a_tie_in_time_a_version_wins_over_a_delete_marker():
    history = [listed("k", "", version_id="d1", latest=False, delete_marker=True), listed("k", '"v"', version_id="v2",
                                                                                         latest=False)]
    state, _ = state_at(TARGET, {}, history, NOON)
    assert state["k"].version_id == "v2"
