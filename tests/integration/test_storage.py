"""The storage contract, run against a local directory and two S3 servers over HTTP.

The S3 adapter talks to real servers in processes of their own (session fixtures), with a fresh
bucket per test that is dropped after it:

- moto (`s3_server`) keeps objects in memory and checks no signatures;
- SeaweedFS (`seaweed_server`) stores on disk and checks SigV4 signatures, its users' rights and
  the CRC32 checksum botocore sends with each body, so refused credentials and bytes changed on
  the way are a real server's answers here.

Parts are 5 MiB (S3's minimum) and objects about 12 MiB, so part boundaries are crossed while the
servers' memory and disk stay small.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import random
import shutil
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import pytest

import core.archives.storage.local
from core.archives.storage import (
    LOCAL_WRITE_BUFFER,
    LOCAL_WRITEBACK,
    LocalDirectoryStorage,
    MiB,
    ObjectStorage,
    S3Storage,
    StorageRefusedError,
    StorageWriter,
)
from core.errors import NotFoundError, UnavailableError, ValidationError
from tests.conftest import drop_bucket
from tests.services import MotoServer, SeaweedServer, free_port, temp_root

T = TypeVar("T")
S3Server = MotoServer | SeaweedServer

PART = 5 * MiB
SIZE = 12 * MiB + 12345  # three parts: 5 + 5 + a short last one


def payload(size: int = SIZE) -> bytes:
    return os.urandom(size)


def chunked(data: bytes, sizes: tuple[int, ...] = (1, 65536, 3 * MiB + 7, 32768, 7 * MiB)):
    """Uneven chunks (one larger than a part) so writes straddle every part boundary."""
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


async def store(storage: ObjectStorage, key: str, data: bytes) -> StorageWriter:
    writer = await storage.open_writer(key)
    for chunk in chunked(data):
        await writer.write(chunk)
    return writer


async def read_all(storage: ObjectStorage, key: str, offset: int = 0) -> bytes:
    return b"".join([chunk async for chunk in storage.open_reader(key, offset)])


async def in_thread(function: Callable[[], T]) -> T:
    return await asyncio.to_thread(function)


def read_seekable(storage: ObjectStorage, key: str) -> bytes:
    with storage.open_seekable(key) as file:
        return file.read()


def s3_storage(server: S3Server, endpoint_url: str | None = None, **options: Any) -> S3Storage:
    return S3Storage(
        endpoint_url or server.endpoint_url,
        f"ghst-test-{uuid.uuid4().hex[:16]}",
        server.access_key,
        server.secret_key,
        server.region,
        part_size=PART,
        **options,
    )


# The S3 servers by the name tests are shown with, and the session fixture that runs each.
S3_SERVERS = {"moto": "s3_server", "seaweedfs": "seaweed_server"}


@pytest.fixture(params=list(S3_SERVERS))
def any_s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn, for the tests of what only the S3 adapter does."""
    server: S3Server = request.getfixturevalue(S3_SERVERS[request.param])
    return server


async def prepared(adapter: S3Storage) -> AsyncIterator[S3Storage]:
    await adapter.prepare()
    try:
        yield adapter
    finally:
        await in_thread(lambda: drop_bucket(adapter))
        await adapter.close()


@pytest.fixture
async def s3(any_s3_server: S3Server) -> AsyncIterator[S3Storage]:
    """An S3 adapter with a bucket of its own, on each S3 server in turn."""
    async for adapter in prepared(s3_storage(any_s3_server)):
        yield adapter


@pytest.fixture
async def seaweed(seaweed_server: SeaweedServer) -> AsyncIterator[S3Storage]:
    """An S3 adapter with a bucket of its own on SeaweedFS, which checks what moto does not."""
    async for adapter in prepared(s3_storage(seaweed_server)):
        yield adapter


@pytest.fixture(params=["local", *(f"s3-{name}" for name in S3_SERVERS)])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        adapter = LocalDirectoryStorage(tmp_path / "archives")
        await adapter.prepare()
        yield adapter
        await adapter.close()
        return
    server = request.getfixturevalue(S3_SERVERS[request.param.removeprefix("s3-")])
    async for s3_adapter in prepared(s3_storage(server)):
        yield s3_adapter


# -- round trips --------------------------------------------------------------------------------


async def test_chunks_across_part_boundaries_read_back_identical(storage: ObjectStorage) -> None:
    data = payload()
    writer = await store(storage, "projects/1/app.zip", data)
    assert writer.bytes_written == len(data)
    stored = await writer.complete()
    assert (stored.key, stored.size) == ("projects/1/app.zip", len(data))
    assert await writer.complete() == stored  # a second complete() answers the same
    assert await storage.size("projects/1/app.zip") == len(data)
    assert await storage.exists("projects/1/app.zip")
    assert await read_all(storage, "projects/1/app.zip") == data
    assert await storage.pending_uploads() == []


async def test_a_writer_keeps_what_was_written_even_if_the_caller_reuses_its_buffer(
    storage: ObjectStorage,
) -> None:
    # The local adapter keeps chunks by reference until a thread writes them out: a buffer the
    # caller fills again must not change what was already written.
    buffer = bytearray(b"a" * 100_000)
    writer = await storage.open_writer("projects/1/app.zip")
    await writer.write(buffer)  # type: ignore[arg-type]
    buffer[:] = b"b" * 100_000
    await writer.write(memoryview(buffer))  # type: ignore[arg-type]
    buffer[:] = b"c" * 100_000
    await writer.complete()
    assert await read_all(storage, "projects/1/app.zip") == b"a" * 100_000 + b"b" * 100_000


@pytest.mark.parametrize("direct_io", [True, False], ids=["o-direct", "page-cache"])
async def test_a_local_upload_of_many_buffers_reads_back_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_io: bool
) -> None:
    # Past LOCAL_WRITE_BUFFER the chunks go to a thread while the next buffer gathers: with
    # O_DIRECT through a staging buffer of whole blocks (the last partial one at the end);
    # without, through the page cache, the kernel asked to start writing every LOCAL_WRITEBACK.
    # Nothing is lost or reordered on the way, whatever the chunk sizes.
    monkeypatch.setattr(core.archives.storage.local, "LOCAL_DIRECT_IO", direct_io)
    storage = LocalDirectoryStorage(tmp_path / "archives")
    data = payload(2 * LOCAL_WRITEBACK + 3 * LOCAL_WRITE_BUFFER + 12345)
    try:
        writer = await storage.open_writer("projects/1/app.zip")
        for chunk in chunked(data, (32768, 1, 5 * LOCAL_WRITE_BUFFER + 3, 200_000, 7)):
            await writer.write(chunk)
        stored = await writer.complete()
        assert stored.size == len(data)
        assert await read_all(storage, "projects/1/app.zip") == data
        assert await storage.pending_uploads() == []
    finally:
        await storage.close()


async def test_s3_sends_parts_of_the_configured_size(s3: S3Storage) -> None:
    stored = await (await store(s3, "projects/1/a", payload())).complete()
    # A multipart ETag ends in the number of parts: 5 MiB + 5 MiB + the rest.
    assert stored.etag is not None and stored.etag.strip('"').endswith("-3")


async def test_seekable_file_reads_at_random_offsets(storage: ObjectStorage) -> None:
    data = payload()
    await (await store(storage, "projects/1/app.zip", data)).complete()
    rng = random.Random(7)

    def check() -> None:
        with storage.open_seekable("projects/1/app.zip") as file:
            assert file.seekable() and file.readable()
            assert file.seek(0, io.SEEK_END) == len(data) and file.tell() == len(data)
            assert file.read(10) == b""
            for _ in range(60):
                position = rng.randrange(len(data))
                size = rng.choice((1, 100, 4096, 300_000, 2 * MiB, 9 * MiB))
                assert file.seek(position) == position
                assert file.read(size) == data[position : position + size]
                assert file.tell() == min(position + size, len(data))
            file.seek(-5, io.SEEK_END)
            assert file.read() == data[-5:]
            file.seek(100)
            file.seek(50, io.SEEK_CUR)
            buffer = bytearray(1000)
            assert file.readinto(buffer) == 1000 and bytes(buffer) == data[150:1150]

    await in_thread(check)


async def test_zipfile_reads_an_archive_through_the_seekable_file(storage: ObjectStorage) -> None:
    buffer = io.BytesIO()
    members = {f"site/page{n}.html": os.urandom(50_000 + n) for n in range(40)}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    await (await store(storage, "projects/2/site.zip", buffer.getvalue())).complete()

    def check() -> dict[str, bytes]:
        with (
            storage.open_seekable("projects/2/site.zip") as file,
            zipfile.ZipFile(file) as archive,
        ):
            assert archive.testzip() is None
            return {name: archive.read(name) for name in archive.namelist()}

    assert await in_thread(check) == members


async def test_reader_streams_in_bounded_chunks_and_from_an_offset(storage: ObjectStorage) -> None:
    data = payload()
    await (await store(storage, "projects/1/a", data)).complete()
    async with storage.open_reader("projects/1/a") as reader:
        assert await reader.read(10) == data[:10]
        rest = bytearray()
        while chunk := await reader.read():
            assert len(chunk) <= 1 * MiB
            rest += chunk
        assert bytes(rest) == data[10:]
        assert await reader.read() == b""
    assert await read_all(storage, "projects/1/a", offset=SIZE - 1000) == data[-1000:]
    assert await read_all(storage, "projects/1/a", offset=SIZE) == b""
    assert await read_all(storage, "projects/1/a", offset=SIZE + 10) == b""
    # Closing a reader halfway releases it (a leaked file would fail the run: warnings are errors).
    reader = storage.open_reader("projects/1/a")
    assert len(await reader.read(5)) == 5
    await reader.aclose()
    assert await reader.read() == b""


async def test_small_and_empty_objects(storage: ObjectStorage) -> None:
    for key, data in (("small/one", b"hello"), ("small/empty", b"")):
        writer = await storage.open_writer(key)
        if data:
            await writer.write(data)
        stored = await writer.complete()
        assert stored.size == len(data)
        assert await storage.size(key) == len(data)
        assert await read_all(storage, key) == data
        assert await in_thread(lambda key=key: read_seekable(storage, key)) == data  # type: ignore[misc]
    assert await storage.pending_uploads() == []


async def test_an_upload_replaces_an_object_with_the_same_key(storage: ObjectStorage) -> None:
    await (await store(storage, "k", b"first version")).complete()
    await (await store(storage, "k", b"second")).complete()
    assert await read_all(storage, "k") == b"second"


async def test_concurrent_writers_do_not_mix(storage: ObjectStorage) -> None:
    datas = {f"projects/{n}/a": payload(PART + 1000 * n) for n in range(3)}
    writers = {key: await storage.open_writer(key) for key in datas}
    for start in range(0, PART + 3000, 256 * 1024):  # interleaved, chunk by chunk
        for key, writer in writers.items():
            await writer.write(datas[key][start : start + 256 * 1024])
    await asyncio.gather(*(writer.complete() for writer in writers.values()))
    for key, data in datas.items():
        assert await read_all(storage, key) == data


# -- size, exists, delete -----------------------------------------------------------------------


async def test_size_exists_and_delete(storage: ObjectStorage) -> None:
    assert await storage.size("projects/1/none") is None
    assert not await storage.exists("projects/1/none")
    await (await store(storage, "projects/1/a", b"x" * 1000)).complete()
    assert await storage.size("projects/1/a") == 1000
    assert await storage.size("projects/1") is None  # a "folder" is not an object
    await storage.delete("projects/1/a")
    assert not await storage.exists("projects/1/a")
    await storage.delete("projects/1/a")  # deleting what is gone is not an error


async def test_delete_prefix_removes_that_prefix_only(storage: ObjectStorage) -> None:
    keys = ["projects/1/a", "projects/1/b", "projects/1/deep/c", "projects/10/a", "projects/2/a"]
    for key in keys:
        await (await store(storage, key, key.encode())).complete()
    assert await storage.delete_prefix("projects/1/") == 3
    assert [key for key in keys if await storage.exists(key)] == ["projects/10/a", "projects/2/a"]
    assert await storage.delete_prefix("projects/1/") == 0
    assert await storage.delete_prefix("projects/") == 2
    assert await storage.delete_prefix("nothing/") == 0


async def test_delete_prefix_matches_key_prefixes_not_only_folders(
    storage: ObjectStorage,
) -> None:
    for key in ("logs/2024-01", "logs/2024-02", "logs/2025-01"):
        await (await store(storage, key, b"x")).complete()
    assert await storage.delete_prefix("logs/2024") == 2
    assert await storage.exists("logs/2025-01")


# -- abort --------------------------------------------------------------------------------------


async def test_abort_mid_upload_leaves_nothing(storage: ObjectStorage) -> None:
    writer = await storage.open_writer("projects/1/a")
    await writer.write(payload(PART + MiB))  # one part sent (S3), the start of a second held
    assert await storage.pending_uploads() == ["projects/1/a"]
    assert await storage.pending_uploads("projects/") == ["projects/1/a"]
    assert await storage.pending_uploads("other/") == []
    await writer.abort()
    assert not await storage.exists("projects/1/a")
    assert await storage.pending_uploads() == []
    await writer.abort()  # idempotent
    with pytest.raises(RuntimeError, match="aborted already"):
        await writer.write(b"more")
    with pytest.raises(RuntimeError, match="aborted already"):
        await writer.complete()


async def test_uploads_a_crash_left_are_aborted_once_stale_and_running_ones_kept(
    storage: ObjectStorage,
) -> None:
    # Two uploads never completed nor aborted (a crashed process): one quiet for longer than
    # the age, one that is running. On S3 both are multipart uploads with a part sent.
    stale = await storage.open_writer("projects/1/stale")
    await stale.write(payload(PART + MiB))
    await asyncio.sleep(3)
    running = await storage.open_writer("projects/1/running")
    await running.write(payload(PART + MiB))
    assert await storage.pending_uploads() == ["projects/1/running", "projects/1/stale"]

    assert await storage.abort_stale_uploads(older_than=2) == ["projects/1/stale"]
    assert await storage.pending_uploads() == ["projects/1/running"]
    assert await storage.abort_stale_uploads(older_than=2) == []
    # The running one is untouched: it completes whole.
    data = payload(PART)
    await running.write(data)
    stored = await running.complete()
    assert stored.size == PART + MiB + PART
    assert (await read_all(storage, "projects/1/running"))[-PART:] == data
    # The writer of the stale one (in a live process) can still abort: nothing to do.
    await stale.abort()
    assert await storage.pending_uploads() == []
    assert not await storage.exists("projects/1/stale")


async def test_abort_before_any_write_and_after_small_writes(storage: ObjectStorage) -> None:
    untouched = await storage.open_writer("a")
    await untouched.abort()
    small = await storage.open_writer("b")
    await small.write(b"less than a part")
    await small.abort()
    assert not await storage.exists("a") and not await storage.exists("b")
    assert await storage.pending_uploads() == []


async def test_abort_after_complete_is_harmless(storage: ObjectStorage) -> None:
    data = payload(PART + 10)
    writer = await store(storage, "projects/1/a", data)
    await writer.complete()
    await writer.abort()
    await writer.abort()
    assert await read_all(storage, "projects/1/a") == data
    with pytest.raises(RuntimeError, match="completed already"):
        await writer.write(b"more")


async def test_a_cancelled_write_can_still_be_aborted_cleanly(storage: ObjectStorage) -> None:
    writer = await storage.open_writer("projects/1/a")
    data = payload(8 * PART)

    halfway = asyncio.Event()

    async def write_all() -> None:
        for chunk in chunked(data, (MiB,)):
            await writer.write(chunk)
            if writer.bytes_written > 2 * PART:  # parts in flight (S3)
                halfway.set()

    task = asyncio.create_task(write_all())
    await halfway.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.abort()
    assert not await storage.exists("projects/1/a")
    assert await storage.pending_uploads() == []


async def test_a_cancelled_abort_still_cleans_up(storage: ObjectStorage) -> None:
    writer = await storage.open_writer("projects/1/a")
    await writer.write(payload(PART + MiB))
    task = asyncio.create_task(writer.abort())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.abort()  # waits for the shielded first one
    assert await storage.pending_uploads() == []
    assert not await storage.exists("projects/1/a")


# -- errors -------------------------------------------------------------------------------------


async def test_a_missing_object_is_not_found(storage: ObjectStorage) -> None:
    reader = storage.open_reader("projects/1/none")
    with pytest.raises(NotFoundError):
        await reader.read()
    with pytest.raises(NotFoundError):
        await in_thread(lambda: storage.open_seekable("projects/1/none"))


BAD_KEYS = [
    "",
    "../escape",
    "a/../../escape",
    "..",
    "/etc/passwd",
    "a//b",
    "./a",
    "a/.",
    "a/",
    "a\0b",
    "a\\..\\b",
    ".incoming/x",
    "x" * 1025,
    "a/" + "y" * 256,
]


@pytest.fixture(params=["local", "s3"])
async def unreachable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ObjectStorage]:
    """An adapter whose storage is never reached: a folder never created, or an S3 endpoint
    where nothing listens. What it refuses, it refuses before any request (a request would
    fail with UnavailableError instead), the same whichever S3 server is behind it."""
    adapter: ObjectStorage
    if request.param == "local":
        adapter = LocalDirectoryStorage(tmp_path / "archives")
    else:
        adapter = S3Storage(f"http://127.0.0.1:{free_port()}", "ghst-nowhere", "k", "s")
    yield adapter
    await adapter.close()


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(unreachable: ObjectStorage, key: str) -> None:
    with pytest.raises(ValidationError):
        await unreachable.open_writer(key)
    with pytest.raises(ValidationError):
        await unreachable.size(key)
    with pytest.raises(ValidationError):
        await unreachable.delete(key)
    with pytest.raises(ValidationError):
        unreachable.open_reader(key)
    with pytest.raises(ValidationError):
        await in_thread(lambda: unreachable.open_seekable(key))


@pytest.mark.parametrize("prefix", ["", "../", "/", "a//", ".incoming/"])
async def test_bad_prefixes_are_refused_for_delete(unreachable: ObjectStorage, prefix: str) -> None:
    with pytest.raises(ValidationError):
        await unreachable.delete_prefix(prefix)


async def test_bad_keys_touch_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "archives"
    outside = tmp_path / "secret"
    outside.write_bytes(b"keep me")
    storage = LocalDirectoryStorage(root)
    await storage.prepare()
    try:
        for key in ("../secret", str(outside), "a/../../secret"):
            with pytest.raises(ValidationError):
                await storage.delete(key)
            with pytest.raises(ValidationError):
                await storage.open_writer(key)
        assert outside.read_bytes() == b"keep me"
        assert sorted(await in_thread(lambda: os.listdir(tmp_path))) == ["archives", "secret"]
    finally:
        await storage.close()


async def test_a_missing_bucket_says_so(any_s3_server: S3Server) -> None:
    storage = s3_storage(any_s3_server)  # never prepared: its bucket does not exist
    missing = f"bucket {storage.bucket!r} does not exist"
    try:
        with pytest.raises(StorageRefusedError, match=missing):
            await storage.open_reader("projects/1/small").read()
        with pytest.raises(StorageRefusedError, match=missing):
            await storage.delete("projects/1/small")
        with pytest.raises(StorageRefusedError, match=missing):
            await storage.delete_prefix("projects/")
        with pytest.raises(StorageRefusedError, match=missing):
            await storage.pending_uploads()
        # Not a storage that is down for a moment: nothing says to try again.
        with pytest.raises(UnavailableError) as refused:
            await storage.abort_stale_uploads(3600)
        assert "try again" not in refused.value.message
    finally:
        await storage.close()


async def test_a_write_to_a_missing_bucket_says_so(s3_server: MotoServer) -> None:
    # moto only: SeaweedFS never answers a write with NoSuchBucket. It creates the bucket for
    # an admin user, and refuses anyone else (AccessDenied: the credentials message).
    storage = s3_storage(s3_server)  # never prepared: its bucket does not exist
    missing = f"bucket {storage.bucket!r} does not exist"
    try:
        small = await storage.open_writer("projects/1/small")
        await small.write(b"x")
        with pytest.raises(StorageRefusedError, match=missing):
            await small.complete()  # one PutObject
        await small.abort()
        large = await storage.open_writer("projects/1/large")
        with pytest.raises(StorageRefusedError, match=missing):
            await large.write(payload(PART + 1))  # a multipart upload
        await large.abort()
    finally:
        await storage.close()


REFUSED = "The archive store refused the panel's credentials"


def stored_keys(storage: S3Storage) -> list[str]:
    """Every object in the storage's bucket, as its own (correctly keyed) client lists them."""
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


async def refused_writes(storage: S3Storage) -> set[str]:
    """Every kind of change is refused with the credentials message: a PutObject, a multipart
    upload, a delete, the listing of pending uploads. The S3 error codes behind the refusals."""
    causes: list[BaseException | None] = []
    small = await storage.open_writer("projects/1/small")
    await small.write(b"x")
    with pytest.raises(StorageRefusedError, match=REFUSED) as refused:
        await small.complete()  # one PutObject
    causes.append(refused.value.__cause__)
    await small.abort()
    large = await storage.open_writer("projects/1/large")
    with pytest.raises(StorageRefusedError, match=REFUSED) as refused:
        await large.write(payload(PART + 1))  # a multipart upload
    causes.append(refused.value.__cause__)
    await large.abort()
    with pytest.raises(StorageRefusedError, match=REFUSED) as refused:
        await storage.delete("projects/1/kept")
    causes.append(refused.value.__cause__)
    with pytest.raises(StorageRefusedError, match=REFUSED) as refused:
        await storage.pending_uploads()
    causes.append(refused.value.__cause__)
    assert "try again" not in refused.value.message  # no retry helps: an administrator must
    return {
        str(cause.response["Error"]["Code"])
        for cause in causes
        if isinstance(cause, botocore.exceptions.ClientError)
    }


@pytest.mark.parametrize(
    ("credentials", "code"),
    [("wrong-secret-key", "SignatureDoesNotMatch"), ("unknown-access-key", "InvalidAccessKeyId")],
)
async def test_refused_credentials_say_so_and_store_nothing(
    seaweed_server: SeaweedServer, seaweed: S3Storage, credentials: str, code: str
) -> None:
    kept = payload(1000)
    await (await store(seaweed, "projects/1/kept", kept)).complete()
    if credentials == "wrong-secret-key":
        keys = (seaweed_server.access_key, seaweed_server.secret_key[::-1])
    else:
        keys = (f"ghst{uuid.uuid4().hex[:16]}", seaweed_server.secret_key)
    wrong = S3Storage(
        seaweed_server.endpoint_url, seaweed.bucket, *keys, seaweed_server.region, part_size=PART
    )
    try:
        assert await refused_writes(wrong) == {code}
        with pytest.raises(StorageRefusedError, match=REFUSED) as refused:
            await read_all(wrong, "projects/1/kept")
        assert isinstance(refused.value.__cause__, botocore.exceptions.ClientError)
        assert refused.value.__cause__.response["Error"]["Code"] == code
        with pytest.raises(StorageRefusedError, match=REFUSED):
            await in_thread(lambda: wrong.open_seekable("projects/1/kept"))  # a HeadObject
    finally:
        await wrong.close()
    # The panel's own credentials see nothing new and nothing gone.
    assert await in_thread(lambda: stored_keys(seaweed)) == ["projects/1/kept"]
    assert await read_all(seaweed, "projects/1/kept") == kept
    assert await seaweed.pending_uploads() == []


async def test_a_user_allowed_only_to_read_is_refused_every_change(
    seaweed_server: SeaweedServer, seaweed: S3Storage
) -> None:
    # Valid credentials without the rights: SeaweedFS answers AccessDenied (403), which says
    # the same to the administrator (the message names permissions).
    kept = payload(1000)
    await (await store(seaweed, "projects/1/kept", kept)).complete()
    user = f"reader-{uuid.uuid4().hex[:8]}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{seaweed.bucket}/*"],
            }
        ],
    }

    def add_reader() -> Any:
        iam = iam_client(seaweed_server)
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName="read-only", PolicyDocument=json.dumps(policy)
        )
        return iam.create_access_key(UserName=user)["AccessKey"]

    def remove_reader(access_key: str) -> None:
        iam = iam_client(seaweed_server)
        iam.delete_access_key(UserName=user, AccessKeyId=access_key)
        iam.delete_user_policy(UserName=user, PolicyName="read-only")
        iam.delete_user(UserName=user)

    key = await in_thread(add_reader)
    reader = S3Storage(
        seaweed_server.endpoint_url,
        seaweed.bucket,
        key["AccessKeyId"],
        key["SecretAccessKey"],
        seaweed_server.region,
        part_size=PART,
    )
    try:
        assert await read_all(reader, "projects/1/kept") == kept  # the user's rights work
        assert await refused_writes(reader) == {"AccessDenied"}
    finally:
        await reader.close()
        await in_thread(lambda: remove_reader(key["AccessKeyId"]))
    assert await in_thread(lambda: stored_keys(seaweed)) == ["projects/1/kept"]
    assert await read_all(seaweed, "projects/1/kept") == kept
    assert await seaweed.pending_uploads() == []


def iam_client(server: SeaweedServer) -> Any:
    """SeaweedFS's IAM API, served on its S3 port."""
    return boto3.client(
        "iam",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


@pytest.mark.parametrize(
    ("operation", "size"),
    [("PutObject", 100_000), ("UploadPart", SIZE)],
    ids=["put-object", "upload-part"],
)
async def test_bytes_changed_after_their_checksum_are_refused_and_nothing_is_stored(
    seaweed: S3Storage, operation: str, size: int
) -> None:
    # Bodies are not hashed into the signature (payload_signing_enabled=False): what tells the
    # server that a body changed on the way is the CRC32 checksum botocore sends beside it
    # (x-amz-checksum-crc32, signed). SeaweedFS checks it (moto does not; nor does SeaweedFS
    # check a signed body's SHA-256). One byte of the prepared request is flipped after the
    # checksum was computed: of one PutObject, or of the second part of a multipart upload.
    flipped: list[str] = []

    def flip_one_byte(request: Any, **kwargs: Any) -> None:
        if operation == "UploadPart" and "partNumber=2" not in request.url:
            return
        body = request.body
        data = bytearray(body.read() if hasattr(body, "read") else body)
        data[len(data) // 2] ^= 0x01
        request.body = bytes(data)
        flipped.append(request.url)

    client = await in_thread(lambda: seaweed.client)
    client.meta.events.register(f"before-send.s3.{operation}", flip_one_byte)
    data = payload(size)
    writer = await seaweed.open_writer("projects/1/app.zip")
    try:
        with pytest.raises(UnavailableError, match="arrived damaged") as refused:
            for chunk in chunked(data):
                await writer.write(chunk)
            await writer.complete()
    finally:
        client.meta.events.unregister(f"before-send.s3.{operation}", flip_one_byte)
    assert flipped, "no request body was changed"
    cause = refused.value.__cause__
    assert isinstance(cause, botocore.exceptions.ClientError)
    assert cause.response["Error"]["Code"] == "BadDigest"
    assert not await seaweed.exists("projects/1/app.zip")
    # A multipart upload stays pending (its first part went up) until the writer aborts it.
    pending = ["projects/1/app.zip"] if operation == "UploadPart" else []
    assert await seaweed.pending_uploads() == pending
    await writer.abort()
    assert await seaweed.pending_uploads() == []
    assert await in_thread(lambda: stored_keys(seaweed)) == []
    # Sent again unchanged, the same bytes are stored whole: only the flipped byte was refused.
    await (await store(seaweed, "projects/1/app.zip", data)).complete()
    assert await read_all(seaweed, "projects/1/app.zip") == data


# -- over HTTPS: how the panel talks to AWS, or to a MinIO with a certificate of its own ----------


def https_storage(server: SeaweedServer, **options: Any) -> S3Storage:
    return s3_storage(server, server.https_endpoint_url, **options)


async def test_s3_over_https_with_its_own_ca_streams_and_reads_back_identical(
    seaweed_server: SeaweedServer,
) -> None:
    # Over HTTPS botocore sends each body in aws-chunked encoding with its CRC32 as a trailer,
    # not as a header as over plain HTTP: the path production takes, tested end to end here.
    storage = https_storage(seaweed_server, ca_bundle=str(seaweed_server.ca_file))
    async for adapter in prepared(storage):
        data = payload()
        writer = await store(adapter, "projects/1/app.zip", data)
        assert (await writer.complete()).size == len(data)
        assert await read_all(adapter, "projects/1/app.zip") == data
        assert await read_all(adapter, "projects/1/app.zip", PART + 7) == data[PART + 7 :]
        seekable = functools.partial(read_seekable, adapter, "projects/1/app.zip")
        assert await in_thread(seekable) == data
        assert await adapter.pending_uploads() == []


async def test_an_untrusted_certificate_says_so_and_stores_nothing(
    seaweed_server: SeaweedServer,
) -> None:
    # The same server and keys, but the panel was not given its CA: not "try again later",
    # which would send an administrator looking for an outage.
    storage = https_storage(seaweed_server)
    untrusted = "TLS certificate is not trusted"
    try:
        with pytest.raises(StorageRefusedError, match=untrusted):
            await storage.prepare()
        writer = await storage.open_writer("projects/1/app.zip")
        await writer.write(b"x" * 1000)
        with pytest.raises(StorageRefusedError, match=untrusted):
            await writer.complete()
        await writer.abort()
        with pytest.raises(StorageRefusedError, match=untrusted):
            await storage.open_reader("projects/1/app.zip").read()
    finally:
        await storage.close()
    trusted = https_storage(seaweed_server, ca_bundle=str(seaweed_server.ca_file))
    try:
        buckets = await in_thread(lambda: trusted.client.list_buckets()["Buckets"])
        assert storage.bucket not in [bucket["Name"] for bucket in buckets]
    finally:
        await trusted.close()


async def test_a_dead_s3_is_unavailable_not_a_hang() -> None:
    storage = S3Storage(f"http://127.0.0.1:{free_port()}", "ghst-nowhere", "k", "s", part_size=PART)
    try:
        with pytest.raises(UnavailableError, match="Storage is not reachable"):
            await storage.prepare()
        with pytest.raises(UnavailableError):
            await storage.size("a")
        with pytest.raises(UnavailableError):
            await storage.delete_prefix("projects/")
        with pytest.raises(UnavailableError):
            await storage.pending_uploads()
        with pytest.raises(UnavailableError):
            await storage.open_reader("a").read()
        with pytest.raises(UnavailableError):
            await in_thread(lambda: storage.open_seekable("a"))
        small = await storage.open_writer("a")
        await small.write(b"hello")
        with pytest.raises(UnavailableError):
            await small.complete()
        await small.abort()  # nothing reached the server: nothing to clean up
        large = await storage.open_writer("b")
        with pytest.raises(UnavailableError):
            await large.write(payload(PART))  # CreateMultipartUpload fails
        await large.abort()
    finally:
        await storage.close()


async def test_s3_going_down_mid_upload_fails_the_upload_and_abort_can_retry() -> None:
    root = temp_root("ghst-moto-down-")
    server = MotoServer(root)
    server.start()
    storage = s3_storage(server)
    try:
        await storage.prepare()
        writer = await storage.open_writer("projects/1/a")
        await writer.write(payload(PART + 10))
        server.stop()
        with pytest.raises(UnavailableError):
            for chunk in chunked(payload(3 * PART), (MiB,)):
                await writer.write(chunk)
            await writer.complete()
        with pytest.raises(UnavailableError):
            await writer.abort()  # AbortMultipartUpload cannot reach the server either
        with pytest.raises(UnavailableError):
            await writer.abort()  # tried again, not silently forgotten
    finally:
        server.stop()
        await storage.close()
        shutil.rmtree(root, ignore_errors=True)


# -- memory -------------------------------------------------------------------------------------


async def _peak_while(action: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        await action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_writer_memory_stays_bounded(storage: ObjectStorage) -> None:
    # Local: 64 MiB. S3: 50 MiB (ten parts, twice what may be held) so moto's in-memory copy
    # stays small.
    total = 64 * MiB if isinstance(storage, LocalDirectoryStorage) else 10 * PART
    chunk = os.urandom(256 * 1024)  # the same chunk again and again: no test data in the peak

    async def upload() -> None:
        writer = await storage.open_writer("projects/1/big")
        for _ in range(total // len(chunk)):
            await writer.write(chunk)
        await writer.complete()

    peak = await _peak_while(upload)
    assert await storage.size("projects/1/big") == total
    if isinstance(storage, LocalDirectoryStorage):
        assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB for a {total // MiB} MiB upload"
    else:
        # One part gathering + those in flight, and less than a part for the rest.
        assert isinstance(storage, S3Storage)
        held = (storage.max_in_flight + 2) * PART
        assert peak < held, f"peak {peak / MiB:.1f} MiB with {PART // MiB} MiB parts"


async def test_reading_memory_stays_bounded(storage: ObjectStorage) -> None:
    total = 4 * PART
    chunk = os.urandom(MiB)
    writer = await storage.open_writer("projects/1/big")
    for _ in range(total // MiB):
        await writer.write(chunk)
    await writer.complete()

    async def stream() -> None:
        count = 0
        async for part in storage.open_reader("projects/1/big"):
            count += len(part)
        assert count == total

    async def seek_through() -> None:
        def scan() -> None:
            with storage.open_seekable("projects/1/big") as file:
                while file.read(256 * 1024):
                    pass

        await in_thread(scan)

    assert await _peak_while(stream) < 6 * MiB
    assert await _peak_while(seek_through) < 6 * MiB
