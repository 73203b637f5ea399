"""Storage in one S3 bucket: multipart uploads fed part by part, ranged reads."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from core.archives.storage.base import (
    STORAGE_DOWN,
    ByteSource,
    ListedObject,
    MiB,
    ObjectReader,
    StorageRefusedError,
    StorageWriter,
    StoredObject,
    WriterLifecycle,
    check_offset,
    seek_position,
    validate_key,
    validate_prefix,
)
from core.errors import NotFoundError, UnavailableError, ValidationError

T = TypeVar("T")

# 8 MiB parts, 4 in flight: 30-33 MiB/s into SeaweedFS on a 2-core machine against 23-24 with
# 16 MiB x 2 (the server stores parts in parallel), and 40 MiB held per upload instead of 48.
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts in one multipart upload
DEFAULT_MAX_IN_FLIGHT = 4
READ_AHEAD = 1 * MiB  # the buffer of `open_seekable` on S3: one ranged GET fills it
MAX_RANGE = 8 * MiB  # at most this much per ranged GET, even for a larger read()

STORAGE_REFUSED = (
    "The archive store refused the panel's credentials, so uploads and downloads cannot work "
    "until an administrator fixes the panel's S3 settings (access key, secret, permissions)."
)
CERTIFICATE_UNTRUSTED = (
    "The archive store's TLS certificate is not trusted, so uploads and downloads cannot work "
    "until an administrator fixes the panel's S3 settings (GHST_S3_CA_BUNDLE)."
)
STORAGE_DAMAGED = (
    "Part of the upload arrived damaged at the archive store, which refused it: nothing was "
    "stored. Please upload it again."
)
BUCKET_MISSING = (
    "The archive store's bucket {bucket!r} does not exist, so uploads and downloads cannot work "
    "until an administrator creates it or fixes the panel's S3 settings."
)

log = logging.getLogger(__name__)

# -- S3 -----------------------------------------------------------------------------------------

# botocore's defaults (60 s connect and read timeouts, "legacy" retries with back-off) make a
# dead S3 hang a client 9-16 s before anything tells the user. Set them explicitly: a refused
# connection fails in ~0.2 s (measured); a host that never answers costs at most 2 attempts of
# 5 s each (total_max_attempts counts the first try; "max_attempts" would count retries only).
#
# Bodies are not hashed into the signature: over plain HTTP (a MinIO beside the panel) botocore
# otherwise SHA-256s every part, ~0.8 s of CPU per GiB uploaded, as much as the CRC32 checksum
# it sends anyway and the server checks. The headers stay signed. This is what botocore does by
# itself over HTTPS.
S3_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"total_max_attempts": 2, "mode": "standard"},
    # MinIO, SeaweedFS and moto serve buckets as paths, not subdomains.
    s3={"addressing_style": "path", "payload_signing_enabled": False},
    request_checksum_calculation="when_supported",
    max_pool_connections=20,
)

# What a storage server that is down, unreachable or dropping connections looks like.
_UNREACHABLE = (
    botocore.exceptions.ConnectionError,  # refused, DNS, connect timeout, TLS, proxy
    botocore.exceptions.HTTPClientError,  # read timeout, connection closed mid-response
    botocore.exceptions.IncompleteReadError,
)


def _error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_missing(error: botocore.exceptions.ClientError) -> bool:
    """A missing object (not a missing bucket, which is the storage's setup gone wrong)."""
    if _error_code(error) == "NoSuchBucket":
        return False
    return _http_status(error) == 404 or _error_code(error) in ("404", "NoSuchKey", "NotFound")


# Answers that mean the panel's S3 settings are wrong, not that S3 is down: no retry helps.
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "403",
        "Forbidden",
    }
)


# A body that did not match its checksum (changed on the way): the server stored nothing.
_DAMAGED_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"})


def _translate(error: Exception, bucket: str = "") -> Exception:
    """A PanelError for a storage server that is down or refuses the panel, else the error."""
    original = error  # botocore is untyped: narrowed to one of its classes, `error` is Any
    if isinstance(error, botocore.exceptions.SSLError):
        # Answers, but with a certificate the panel does not trust: no retry helps.
        log.error("S3's TLS certificate is not trusted: %s (set GHST_S3_CA_BUNDLE)", error)
        return StorageRefusedError(CERTIFICATE_UNTRUSTED)
    if isinstance(error, _UNREACHABLE):
        return UnavailableError(STORAGE_DOWN)
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        log.error("S3 refused: the panel has no access key for it (GHST_S3_ACCESS_KEY)")
        return StorageRefusedError(STORAGE_REFUSED)
    if not isinstance(error, botocore.exceptions.ClientError):
        return error
    code, status = _error_code(error), _http_status(error)
    if code == "NoSuchBucket":
        name = str(error.response.get("Error", {}).get("BucketName") or bucket)
        log.error("S3 bucket %r does not exist (check GHST_S3_BUCKET)", name)
        return StorageRefusedError(BUCKET_MISSING.format(bucket=name))
    if code in _DAMAGED_CODES:
        log.warning("S3 refused a body that did not match its checksum (%s)", code)
        return UnavailableError(STORAGE_DAMAGED)
    if status == 403 or code in _REFUSED_CODES:
        log.error("S3 refused the panel's credentials: %s (HTTP %s)", code, status)
        return StorageRefusedError(STORAGE_REFUSED)
    if status >= 500:
        return UnavailableError(STORAGE_DOWN)
    return original


def _guarded(function: Callable[[], T], bucket: str = "") -> T:
    try:
        return function()
    except Exception as error:
        translated = _translate(error, bucket)
        if translated is error:
            raise
        raise translated from error


class S3Storage:
    """Objects in one S3 bucket, with streamed multipart uploads and ranged reads."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        part_size: int = DEFAULT_PART_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        *,
        max_workers: int = 8,
        read_ahead: int = READ_AHEAD,
        config: botocore.config.Config = S3_CLIENT_CONFIG,
        ca_bundle: str | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self.read_ahead = read_ahead
        self._credentials = (access_key, secret_key)
        self._config = config
        self._ca_bundle = ca_bundle
        # The client is built on first use, in a worker thread: loading botocore's service
        # models takes tens of milliseconds of CPU the event loop must not spend.
        self._client_lock = threading.Lock()
        self._client_instance: Any = None
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ghst-s3")

    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe once built). Call from a worker thread."""
        with self._client_lock:
            if self._client_instance is None:
                access_key, secret_key = self._credentials
                session = boto3.session.Session()
                self._client_instance = session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    region_name=self.region,
                    config=self._config,
                    verify=self._ca_bundle,  # None: the system's CAs
                )
            return self._client_instance

    async def _run(self, function: Callable[[], T]) -> T:
        """Run a blocking call on the adapter's threads; a dead server is UnavailableError."""
        loop = asyncio.get_running_loop()
        guarded = functools.partial(_guarded, function, bucket=self.bucket)
        return await loop.run_in_executor(self._executor, guarded)

    async def prepare(self) -> None:
        await self.ensure_bucket()

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""

        def ensure() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as error:
                if not _is_missing(error):
                    raise
            options: dict[str, Any] = {}
            if self.region != "us-east-1":
                options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(Bucket=self.bucket, **options)
            except botocore.exceptions.ClientError as error:
                if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        await self._run(ensure)

    async def open_writer(self, key: str) -> StorageWriter:
        return _S3Writer(self, validate_key(key))

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run(functools.partial(self.client.delete_object, Bucket=self.bucket, Key=key))

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)

        def remove() -> int:
            count = 0
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                failed = answer.get("Errors", [])
                if failed:
                    first = failed[0]
                    raise UnavailableError(
                        f"Storage did not delete {len(failed)} objects"
                        f" ({first.get('Code')}: {first.get('Message')}). Please try again."
                    )
                count += len(keys)
            return count

        return await self._run(remove)

    def _head_size(self, key: str) -> int | None:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as error:
            if _is_missing(error):
                return None
            raise
        return int(answer["ContentLength"])

    async def size(self, key: str) -> int | None:
        validate_key(key)
        return await self._run(functools.partial(self._head_size, key))

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    def open_reader(self, key: str, offset: int = 0) -> ObjectReader:
        validate_key(key)
        check_offset(offset)

        def opener() -> ByteSource | None:
            options = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key, **options)
            except botocore.exceptions.ClientError as error:
                if _is_missing(error):
                    raise NotFoundError(f"There is no stored object {key!r}.") from error
                if _error_code(error) == "InvalidRange":  # offset at or past the end
                    return None
                raise
            body: ByteSource = answer["Body"]
            return body

        return ObjectReader(opener, self._run)

    async def list_objects(self, prefix: str) -> list[ListedObject]:
        validate_prefix(prefix, allow_empty=False)

        def scan() -> list[ListedObject]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            found = [
                ListedObject(item["Key"], int(item["Size"]), item["LastModified"].timestamp())
                for page in pages
                for item in page.get("Contents", [])
            ]
            return sorted(found, key=lambda listed: listed.key)

        return await self._run(scan)

    def open_seekable(self, key: str) -> BinaryIO:
        validate_key(key)
        size = _guarded(functools.partial(self._head_size, key), self.bucket)
        if size is None:
            raise NotFoundError(f"There is no stored object {key!r}.")
        raw = _RangeReader(self.client, self.bucket, key, size)
        return io.BufferedReader(raw, buffer_size=self.read_ahead)

    async def pending_uploads(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix, allow_empty=True)

        def scan() -> list[str]:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return sorted(upload["Key"] for page in pages for upload in page.get("Uploads", []))

        return await self._run(scan)

    async def abort_stale_uploads(self, older_than: float) -> list[str]:
        def remove() -> list[str]:
            # S3's clock, as near as ours: the times compared are S3's own timestamps.
            cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
            client = self.client
            removed: list[str] = []
            uploads = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for upload in (item for page in uploads for item in page.get("Uploads", [])):
                key, upload_id = upload["Key"], upload["UploadId"]
                if upload["Initiated"] > cutoff:
                    continue
                # Started long ago, but a large upload may still be sending parts.
                parts = client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
                try:
                    last = max(
                        (part["LastModified"] for page in parts for part in page.get("Parts", [])),
                        default=upload["Initiated"],
                    )
                    if last > cutoff:
                        continue
                    client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except botocore.exceptions.ClientError as error:
                    if _error_code(error) == "NoSuchUpload":
                        continue  # completed or aborted meanwhile
                    raise
                removed.append(key)
            return sorted(removed)

        return await self._run(remove)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._client_lock:
            client, self._client_instance = self._client_instance, None
        if client is not None:
            client.close()


class _RangeReader(io.RawIOBase):
    """A read-only, seekable view of one S3 object: each readinto is one ranged GET.

    Wrapped in io.BufferedReader, whose buffer is the read-ahead: small reads and short
    seeks are served from it, so zipfile's and tarfile's many small reads cost few requests.
    """

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._position = 0
        self.name = key
        self.requests = 0

    def _check_not_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_not_closed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_not_closed()
        self._position = seek_position(self._position, self._size, offset, whence)
        return self._position

    def readall(self) -> bytes:
        # RawIOBase's readall reads 8 KiB at a time: here one ranged GET (~3 ms) per 8 KiB.
        chunks = []
        while chunk := self.read(MAX_RANGE):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        self._check_not_closed()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position, MAX_RANGE)
        if wanted <= 0:
            return 0
        first, last = self._position, self._position + wanted - 1
        got = _guarded(functools.partial(self._get, first, last, view[:wanted]), self._bucket)
        self._position += got
        return got

    def _get(self, first: int, last: int, view: memoryview) -> int:
        self.requests += 1
        answer = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={first}-{last}"
        )
        body = answer["Body"]
        got = 0
        try:
            while got < len(view):
                count = body.readinto(view[got:])
                if not count:
                    break
                got += count
        finally:
            body.close()
        if got == 0:
            raise NotFoundError(f"The stored object {self._key!r} changed while it was read.")
        return got


class _S3Writer(WriterLifecycle):
    """A multipart upload fed part by part; a single PutObject when it ends within one part.

    Each part is gathered in a bytearray and handed to a worker thread, which computes its
    CRC32 in one call (zlib, without the GIL) and sends it with the part: botocore would
    otherwise read the part again in 1 MiB pieces to checksum it, and send a file-like body
    16 KiB at a time, both under the GIL the event loop needs. A bytes-like body goes out in
    one `sendall`. `write` waits while `max_in_flight` parts are uploading, so at most
    (max_in_flight + 1) parts are in memory.

    Requests run as futures of their own, shielded from the caller's cancellation, and abort()
    waits for them: a write or complete cancelled halfway (a dropped connection) cannot leave
    a multipart upload or an object behind that abort() did not see.
    """

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__(key)
        self._storage = storage
        # The part being gathered (its first `_filled` bytes); None between parts (allocated
        # by the next write). The first one grows as bytes come: most uploads are small.
        self._buffer: bytearray | None = bytearray()
        self._filled = 0
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._in_flight: set[asyncio.Future[None]] = set()
        self._creating: asyncio.Future[dict[str, Any]] | None = None
        self._storing: asyncio.Future[dict[str, Any]] | None = None

    def _start(self, request: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.ensure_future(self._storage._run(request))

    async def write(self, data: bytes) -> None:
        async with self._lock:
            self._check_open()
            try:
                view = memoryview(data)
                part_size = self._storage.part_size
                while view:
                    if self._buffer is None:
                        # Past the first part more are likely: give the buffer its full size
                        # at once, since a buffer grown write by write over-allocates.
                        self._buffer = bytearray(part_size)
                    piece = view[: part_size - self._filled]
                    end = self._filled + len(piece)
                    if len(self._buffer) >= end:
                        self._buffer[self._filled : end] = piece
                    else:
                        self._buffer += piece
                    self._filled = end
                    self._bytes_written += len(piece)
                    view = view[len(piece) :]
                    if self._filled >= part_size:
                        await self._ship_part()
            except BaseException:
                self._state = "failed"
                raise

    async def _ship_part(self) -> None:
        storage = self._storage
        if self._upload_id is None:
            self._creating = self._start(
                functools.partial(
                    storage.client.create_multipart_upload, Bucket=storage.bucket, Key=self._key
                )
            )
            answer = await asyncio.shield(self._creating)
            self._upload_id = str(answer["UploadId"])
        await self._wait_for_room(storage.max_in_flight - 1)
        if self._next_part > MAX_PARTS:
            raise ValidationError(
                f"This upload is larger than storage accepts ({MAX_PARTS} parts of "
                f"{storage.part_size // MiB} MiB)."
            )
        body = self._take_buffer()
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.add(self._start(functools.partial(self._upload, number, body)))

    def _take_buffer(self) -> bytearray:
        body = bytearray() if self._buffer is None else self._buffer
        del body[self._filled :]  # a preallocated buffer holds zeros past what was written
        self._buffer, self._filled = None, 0
        return body

    def _upload(self, number: int, body: bytearray) -> None:
        try:
            answer = self._storage.client.upload_part(
                Bucket=self._storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumCRC32=_crc32(body),
            )
        finally:
            del body[:]  # free the part now, not when the future is collected
        self._etags[number] = str(answer["ETag"])

    def _put(self, body: bytearray) -> dict[str, Any]:
        answer: dict[str, Any] = self._storage.client.put_object(
            Bucket=self._storage.bucket, Key=self._key, Body=body, ChecksumCRC32=_crc32(body)
        )
        return answer

    async def _wait_for_room(self, at_most: int) -> None:
        """Wait until no more than `at_most` parts are uploading; raise a part's failure."""
        while len(self._in_flight) > at_most:
            done, self._in_flight = await asyncio.wait(
                self._in_flight, return_when=asyncio.FIRST_COMPLETED
            )
            errors = [error for future in done if (error := future.exception()) is not None]
            if errors:
                raise errors[0]

    async def complete(self) -> StoredObject:
        async with self._lock:
            if self._stored is not None:
                return self._stored
            self._check_open()
            self._state = "completing"
            try:
                etag = await self._finish()
            except BaseException:
                self._state = "failed"
                raise
            self._state = "completed"
            self._stored = StoredObject(self._key, self._bytes_written, etag)
            return self._stored

    async def _finish(self) -> str:
        storage = self._storage
        if self._upload_id is None:  # it all fits in one part
            request = functools.partial(self._put, self._take_buffer())
        else:
            if self._buffer is not None and self._filled:
                await self._ship_part()  # the last part may be smaller than part_size
            await self._wait_for_room(0)
            parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
            request = functools.partial(
                storage.client.complete_multipart_upload,
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._storing = self._start(request)
        answer = await asyncio.shield(self._storing)
        return str(answer["ETag"])

    async def _abort(self) -> None:
        async with self._lock:
            if self._state in ("completed", "aborted"):
                return
            self._state = "aborted"
            self._buffer = None
            # Wait for every request still running, so none lands after the clean-up.
            if self._creating is not None and self._upload_id is None:
                await asyncio.wait([self._creating])
                if self._creating.exception() is None:
                    self._upload_id = str(self._creating.result()["UploadId"])
            while self._in_flight:
                done, self._in_flight = await asyncio.wait(self._in_flight)
                for future in done:
                    future.exception()  # retrieved, so asyncio does not log it
            maybe_stored = False
            if self._storing is not None:
                await asyncio.wait([self._storing])
                maybe_stored = _may_have_stored(self._storing)
            if self._upload_id is None and not maybe_stored:
                return
            try:
                await self._storage._run(functools.partial(self._clean_up, maybe_stored))
            except BaseException:
                self._state = "failed"  # let a later abort() try again
                raise

    def _clean_up(self, maybe_stored: bool) -> None:
        storage = self._storage
        if self._upload_id is not None:
            try:
                storage.client.abort_multipart_upload(
                    Bucket=storage.bucket, Key=self._key, UploadId=self._upload_id
                )
            except botocore.exceptions.ClientError as error:
                if _error_code(error) != "NoSuchUpload":
                    raise
        if maybe_stored:
            storage.client.delete_object(Bucket=storage.bucket, Key=self._key)


def _may_have_stored(request: asyncio.Future[Any]) -> bool:
    """Whether a finished PutObject/CompleteMultipartUpload may have stored the object."""
    if request.cancelled():
        return True
    error = request.exception()
    if error is None:
        return True  # it did: complete() was cancelled or failed after the answer came
    cause = error.__cause__ if isinstance(error, UnavailableError) else error
    # A refused connection or an error answer stored nothing; a lost answer may have.
    return not isinstance(
        cause, botocore.exceptions.ConnectionError | botocore.exceptions.ClientError
    )


def _crc32(body: bytearray) -> str:
    """The part's CRC32 as S3's x-amz-checksum-crc32 wants it (base64 of 4 big-endian bytes)."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
