"""A narrow fill for moto's S3: ListObjectVersions with a KeyMarker and no VersionIdMarker.

S3 then lists the versions of the keys after KeyMarker (every version of the marker key itself is left out).
moto skips the keys before the marker and then one version more, whatever it is: with KeyMarker `b` it returns
the older versions of `b`, and with a marker between two keys it drops the first version of the next key. Here
such a request is answered as moto answers the equivalent pair of markers it does handle: the last version
listed of the greatest key not after KeyMarker (or no marker at all when there is none), so that the listing
starts right after it. Snapshots that list key ranges concurrently start each range this way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.core.utils import unix_time_millis
from moto.s3.models import S3Backend


def _equivalent_markers(backend: S3Backend, bucket_name: str, key_marker: str) -> tuple[str | None, str | None]:
    """The (KeyMarker, VersionIdMarker) moto handles that list what S3 lists after `key_marker` alone."""
    bucket = backend.get_bucket(bucket_name)
    before = [name for name in bucket.keys if name <= key_marker]
    if not before:
        return None, None
    name = max(before)
    # moto lists a key's versions newest first (a stable sort of the order it holds them in): the last is listed last
    versions = sorted(bucket.keys.getlist(name), key=lambda version: -unix_time_millis(version.last_modified))
    return name, versions[-1].version_id


@contextmanager
def version_listing_after_key_marker() -> Iterator[None]:
    original = S3Backend.list_object_versions

    def list_object_versions(self: S3Backend, bucket_name: str, delimiter: str | None = None,
                             key_marker: str | None = None, max_keys: int | None = 1000, prefix: str = "",
                             version_id_marker: str | None = None) -> Any:
        if key_marker and not version_id_marker:
            key_marker, version_id_marker = _equivalent_markers(self, bucket_name, key_marker)
        return original(self, bucket_name, delimiter=delimiter, key_marker=key_marker, max_keys=max_keys,
                        prefix=prefix, version_id_marker=version_id_marker)

    with mock.patch.object(S3Backend, "list_object_versions", list_object_versions):
        yield
