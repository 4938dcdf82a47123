"""What a bucket restore changes, decided by content from the two states alone: no AWS, no moto."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drcore.backup.snapshot_checkpoints import ranges_spread_over
from drcore.restore import bucket_diff
from drcore.restore.bucket_diff import (
    DesiredObject,
    ListedVersion,
    content_diff,
    decide,
    keyed_pairs,
    state_at,
    versions_listed,
)

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


# Decided as the keys stream past ---------------------------------------------------------------------------------

KEYS = st.text(alphabet="ab/é-", min_size=1, max_size=4)


@st.composite
def two_states(draw: st.DrawFn) -> tuple[dict[str, DesiredObject], dict[str, ListedVersion], set[str]]:
    """A desired and a current state over keys drawn from a small alphabet (prefixes of each other, non-ASCII), each
    current object the desired version, another version of the same body, or other content; and which of the pairs
    a HeadObject finds equal."""
    keys = draw(st.lists(KEYS, unique=True, max_size=40))
    wanted, current, equal = {}, {}, set()
    for key in keys:
        kind = draw(st.sampled_from(["desired only", "current only", "same version", "same body", "other"]))
        if kind != "current only":
            wanted[key] = desired(key, '"a"', archived=draw(st.booleans()))
        if kind == "current only":
            current[key] = listed(key, '"x"')
        elif kind == "same version":
            current[key] = listed(key, '"a"', version_id="v1")
        elif kind == "same body":
            current[key] = listed(key, '"a"')
            if draw(st.booleans()):
                equal.add(key)
        elif kind == "other":
            current[key] = listed(key, '"b"', size=11)
    return wanted, current, equal


@settings(max_examples=200, deadline=None)
@given(states=two_states(), looked_at_once=st.integers(1, 4), held_at_most=st.integers(1, 6))
def test_decisions_come_in_key_order_whatever_waits_for_a_head_object_and_agree_with_the_model(
        states: tuple[dict[str, DesiredObject], dict[str, ListedVersion], set[str]], looked_at_once: int,
        held_at_most: int) -> None:
    # Given two states, and HeadObjects asked a few at a time with few decisions held behind them
    wanted, current, equal = states
    asked: list[int] = []

    def same_objects(pairs: list[tuple[DesiredObject, ListedVersion]]) -> list[bool]:
        asked.append(len(pairs))
        return [want.key in equal for want, _ in pairs]

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(bucket_diff, "LOOKED_AT_ONCE", looked_at_once)
        patched.setattr(bucket_diff, "HELD_AT_MOST", held_at_most)
        pairs = keyed_pairs(sorted(wanted.values(), key=lambda want: want.key),
                            sorted(current.values(), key=lambda have: have.key))
        decided = list(decide(pairs, TARGET, {}, same_objects))
    # Then every key of either comes once, in key order (code point order: S3's UTF-8 byte order)
    assert [item.key for item in decided] == sorted(wanted.keys() | current.keys())
    # And each is what the model says: removed, missing, the very version, or compared by its HeadObject
    for item in decided:
        want, have = wanted.get(item.key), current.get(item.key)
        expected = ("remove" if want is None else "missing" if have is None
                    else "unchanged" if have.version_id == "v1" or (have.etag == '"a"' and item.key in equal)
                    else "changed")
        assert (item.kind, item.compared) == (expected, have is not None and want is not None
                                              and have.version_id != "v1" and have.etag == '"a"')
    # And no HeadObject batch is larger than asked
    assert all(0 < size <= looked_at_once for size in asked if size)


def test_pairs_out_of_key_order_are_refused():
    with pytest.raises(ValueError, match="not in key order"):
        list(keyed_pairs([desired("b", '"a"'), desired("a", '"a"')], []))


def test_a_listing_page_gives_its_versions_and_delete_markers_in_key_order():
    # Given a page as ListObjectVersions gives it: versions and delete markers apart, each in key order
    page = {"Versions": [{"Key": "a", "VersionId": "v2", "ETag": '"x"', "Size": 1, "LastModified": NOON,
                          "IsLatest": True},
                         {"Key": "c", "VersionId": "v1", "ETag": '"y"', "Size": 1, "LastModified": NOON,
                          "IsLatest": True}],
            "DeleteMarkers": [{"Key": "b", "VersionId": "d1", "LastModified": NOON, "IsLatest": True}]}
    # Then they come in key order, the delete marker between the two versions
    assert [(item.key, item.delete_marker) for item in versions_listed([page])] == [
        ("a", False), ("b", True), ("c", False)]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(alphabet="ab/é", min_size=1, max_size=8), unique=True, max_size=300),
       page=st.integers(1, 20), most=st.integers(1, 8))
def test_ranges_spread_over_keys_of_unknown_number_cover_every_key_once_and_split_them_about_evenly(
        keys: list[str], page: int, most: int) -> None:
    # Given sorted keys whose number the cutter is not told
    ordered = sorted(keys)
    # When ranges are cut from them in one pass
    ranges = ranges_spread_over(iter(ordered), page, most)
    # Then there are at most `most`, at least a page of keys each, and every key (any other too) falls in exactly one
    assert 1 <= len(ranges) <= max(1, min(most, len(ordered) // page))
    for key in [*ordered, "", "zzz"]:
        assert sum(bounds.holds(key) for bounds in ranges) == 1
    # And none holds more than about twice its share, and the last a little more (the cuts are every few keys)
    if len(ranges) > 1:
        share = len(ordered) / len(ranges)
        assert all(sum(bounds.holds(key) for key in ordered) <= 2 * share + 4 for bounds in ranges)
