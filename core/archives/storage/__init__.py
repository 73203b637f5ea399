"""Object storage for archive versions: one interface (`base`), two adapters (`local`, `s3`).

    ObjectStorage (Protocol)
    ├── LocalDirectoryStorage   files under one directory (development, a single host)
    └── S3Storage               one S3 bucket (MinIO, AWS; moto in the tests)

An upload streams through a `StorageWriter`: `write` as bytes arrive, then `complete` or
`abort`. Memory stays bounded whatever the object's size: S3 parts (8 MiB by default) go up
as multipart uploads with at most four parts in flight, and `write` waits while all are
uploading; the local adapter writes to a temporary file under `root/.incoming` and renames it
into place on `complete`. An aborted writer leaves nothing behind: no object, no temporary file,
no pending multipart upload (`pending_uploads` shows what would be orphaned). What a
crashed process left behind, `abort_stale_uploads` removes.

Reading is either streamed (`open_reader`, for downloads) or random access (`open_seekable`, a
synchronous seekable file for zipfile/tarfile running in a thread; on S3 it does ranged GETs).

Blocking work (boto3 calls, file IO) runs on a small thread pool owned by each adapter, never on
the event loop. A storage backend that cannot be reached raises `UnavailableError`; one that
refuses the panel's credentials or lacks its bucket raises `StorageRefusedError` (an
`UnavailableError` whose message says so, for an administrator to fix); a bad key raises
`ValidationError`; a missing object raises `NotFoundError` when opened for reading.
"""

from __future__ import annotations

from pathlib import Path

from core.archives.storage.base import (
    INCOMING,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    READ_CHUNK,
    STORAGE_DOWN,
    ListedObject,
    MiB,
    ObjectReader,
    ObjectStorage,
    StorageRefusedError,
    StorageWriter,
    StoredObject,
    validate_key,
    validate_prefix,
)
from core.archives.storage.local import (
    DIRECT_IO_BLOCK,
    LOCAL_DIRECT_IO,
    LOCAL_WRITE_BUFFER,
    LOCAL_WRITEBACK,
    LocalDirectoryStorage,
)
from core.archives.storage.s3 import (
    BUCKET_MISSING,
    CERTIFICATE_UNTRUSTED,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MAX_RANGE,
    MIN_PART_SIZE,
    READ_AHEAD,
    S3_CLIENT_CONFIG,
    STORAGE_DAMAGED,
    STORAGE_REFUSED,
    S3Storage,
)
from core.errors import ValidationError

__all__ = [
    "BUCKET_MISSING",
    "CERTIFICATE_UNTRUSTED",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_PART_SIZE",
    "DIRECT_IO_BLOCK",
    "INCOMING",
    "LOCAL_DIRECT_IO",
    "LOCAL_WRITEBACK",
    "LOCAL_WRITE_BUFFER",
    "MAX_KEY_BYTES",
    "MAX_PARTS",
    "MAX_RANGE",
    "MAX_SEGMENT_BYTES",
    "MIN_PART_SIZE",
    "READ_AHEAD",
    "READ_CHUNK",
    "S3_CLIENT_CONFIG",
    "STORAGE_DAMAGED",
    "STORAGE_DOWN",
    "STORAGE_REFUSED",
    "ListedObject",
    "LocalDirectoryStorage",
    "MiB",
    "ObjectReader",
    "ObjectStorage",
    "S3Storage",
    "StorageRefusedError",
    "StorageWriter",
    "StoredObject",
    "storage_from_settings",
    "validate_key",
    "validate_prefix",
]


def storage_from_settings(
    *,
    s3_endpoint: str | None,
    s3_bucket: str,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_region: str,
    storage_dir: str | Path,
    s3_ca_bundle: str | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> ObjectStorage:
    """S3 when an endpoint is set, else the local directory `storage_dir`.

    Call `await storage.prepare()` before the first upload (it creates the bucket or folder).
    """
    if s3_endpoint:
        return S3Storage(
            s3_endpoint,
            s3_bucket,
            s3_access_key,
            s3_secret_key,
            s3_region,
            part_size,
            max_in_flight,
            ca_bundle=s3_ca_bundle,
        )
    if not str(storage_dir):
        raise ValidationError("Set a storage directory or an S3 endpoint for archives.")
    return LocalDirectoryStorage(Path(storage_dir))
