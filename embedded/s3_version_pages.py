"""A narrow performance fill for moto's S3: ListObjectVersions that costs a page, not the whole bucket.

moto answers every ListObjectVersions request by deep-copying every version of the bucket and sorting them
all, then walking from the first: a page of a 100,000-object bucket takes seconds, and listing the bucket
takes longer than S3 takes to list a billion. Here the same walk, the same loop over the same versions in the
same order (moto's own code, its answers unchanged), starts at the first key the request can list (the
KeyMarker's, else the prefix's; every version before it moto skips or filters out) and stops at the first key
past the prefix, and copies only the versions it visits, shallowly. tests/unit/test_embedded_s3_fills.py checks
the answers against moto's own on generated buckets and requests.

Only the tests use it (tests/conftest.py): a page of a big bucket then costs the tests what it costs in S3. The
embedded server the benchmark measures keeps moto's listing as it is, on both sides of a comparison (README,
"Benchmarks").
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.core.utils import unix_time_millis
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend

# moto's own, as imported (tests/conftest.py imports this module before any fill patches S3Backend): the reference the
# fill's answers are checked against.
MOTO_LIST_OBJECT_VERSIONS = S3Backend.list_object_versions


def _versions_from(bucket: Any, start: str, prefix: str) -> Iterator[Any]:
    """Copies of the bucket's versions in moto's listing order (by key, newest first), from the key `start`,
    up to the last key under `prefix` (moto lists each key's versions in a stable sort of the order it holds them).
    Typed Any: moto's listing sets `is_latest` on its copies, an attribute its classes do not declare. Shallow copies:
    `is_latest` is all the listing writes (moto deep-copies each version, its body's buffer too, a third of a
    second a page of 1,000)."""
    names = sorted(bucket.keys.keys())
    for name in names[bisect.bisect_left(names, start):]:
        if prefix and name > prefix and not name.startswith(prefix):
            return
        held = bucket.keys.getlist(name)
        yield from (copy.copy(version) for version in sorted(
            held, key=lambda version: -unix_time_millis(version.last_modified)))


def list_object_versions(self: S3Backend, bucket_name: str, delimiter: str | None = None,
                         key_marker: str | None = None, max_keys: int | None = 1000, prefix: str = "",
                         version_id_marker: str | None = None
                         ) -> tuple[list[FakeKey], list[str], list[FakeDeleteMarker], str | None, str | None]:
    """moto's S3Backend.list_object_versions (moto 5), its loop verbatim over `_versions_from`."""
    bucket = self.get_bucket(bucket_name)

    common_prefixes: set[str] = set()
    requested_versions: list[FakeKey] = []
    delete_markers: list[FakeDeleteMarker] = []
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None
    # Before the marker's key, moto skips every version; before the prefix's first key, it filters every one out.
    start = key_marker if key_marker is not None else prefix
    last_name = None

    skip_versions = True
    last_item_added: FakeKey | FakeDeleteMarker | None = None
    for version in _versions_from(bucket, start, prefix):
        name = version.name
        version.is_latest = name != last_name
        if version.is_latest:
            last_name = name

        if skip_versions:
            if key_marker is None:
                skip_versions = False
            elif not version_id_marker:
                skip_versions = version.name < key_marker
                continue
            elif version.name == key_marker and version.version_id == version_id_marker:
                skip_versions = False
                continue
            else:
                continue

        if not name.startswith(prefix):
            continue
        is_common_prefix = False
        if delimiter and delimiter in name[len(prefix):]:
            end_of_delimiter = len(prefix) + name[len(prefix):].index(delimiter) + len(delimiter)
            prefix_including_delimiter = name[0:end_of_delimiter]
            if prefix_including_delimiter == key_marker:
                continue
            common_prefixes.add(prefix_including_delimiter)
            name = prefix_including_delimiter
            is_common_prefix = True
        elif last_item_added:
            name = last_item_added.name

        if max_keys is not None and len(requested_versions) + len(delete_markers) + len(common_prefixes) >= max_keys:
            next_key_marker = name
            if is_common_prefix:
                next_version_id_marker = None
            elif last_item_added is not None:
                next_version_id_marker = last_item_added.version_id
            else:
                next_version_id_marker = None
            break

        if not is_common_prefix:
            last_item_added = version
            if not isinstance(version, FakeKey):
                delete_markers.append(version)
            else:
                requested_versions.append(version)

    return requested_versions, sorted(common_prefixes), delete_markers, next_key_marker, next_version_id_marker


@contextmanager
def version_listing_by_page() -> Iterator[None]:
    with mock.patch.object(S3Backend, "list_object_versions", list_object_versions):
        yield
