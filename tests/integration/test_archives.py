"""Archive versions through the one upload path, against real PostgreSQL, Redis and storage."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.archives.checks import ArchiveRejected
from core.archives.storage import MIN_PART_SIZE, S3Storage
from core.errors import NotFoundError, QuotaExceededError, ValidationError
from core.panel import Panel
from core.settings import Settings
from tests.actors import acting
from tests.conftest import drop_bucket, panel_on_s3, reset_state, with_settings
from tests.services import SeaweedServer

PASSWORD = "correct horse battery"


def app_zip(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (files or {"Dockerfile": b"FROM scratch\n", "index.html": b"hi"}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def upload(
    panel: Panel, user_id: int, project: str, filename: str, data: bytes, chunk: int = 7000
):  # type: ignore[no-untyped-def]
    transfer = await panel.archives.begin_upload(acting(user_id), project, filename)
    for start in range(0, len(data), chunk):
        await transfer.write(data[start : start + chunk])
    return await transfer.finish()


async def alice_with_project(panel: Panel) -> int:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.projects.create(acting(alice.id), "shop")
    return alice.id


async def test_a_good_archive_becomes_the_next_version(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    data = app_zip()
    first = await upload(panel, alice, "shop", "app.zip", data)
    second = await upload(panel, alice, "shop", "app.zip", app_zip())
    assert (first.version, second.version, first.name) == (1, 2, "v1-app.zip")
    assert [a.name for a in await panel.archives.list(acting(alice), "shop")] == [
        "v2-app.zip",
        "v1-app.zip",
    ]
    # Byte-identical when read back, and counted in the project (cache invalidated).
    chunks = [chunk async for chunk in panel.archives.open_reader(first)]
    assert b"".join(chunks) == data
    assert (await panel.projects.get(acting(alice), "shop")).versions == 2
    used, quota = await panel.archives.usage(acting(alice))
    assert used == first.size + second.size and quota == 1 << 30


async def test_a_refused_archive_is_history_with_its_reason_and_nothing_stored(
    panel: Panel,
) -> None:
    alice = await alice_with_project(panel)
    with pytest.raises(ArchiveRejected) as refused:
        await upload(panel, alice, "shop", "app.zip", app_zip({"README.md": b"no app here"}))
    history = await panel.archives.list(acting(alice), "shop")
    assert [(a.status, a.version, a.message) for a in history] == [
        ("rejected", None, refused.value.message)
    ]
    assert await panel.storage.pending_uploads() == []
    assert (await panel.archives.usage(acting(alice)))[0] == 0


async def test_over_quota_aborts_while_bytes_arrive(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE users SET storage_quota_bytes = 10000 WHERE id = $1", alice)
    transfer = await panel.archives.begin_upload(acting(alice), "shop", "big.zip")
    await transfer.write(b"x" * 6000)
    with pytest.raises(QuotaExceededError, match="does not fit in your storage quota"):
        await transfer.write(b"x" * 6000)
    assert await panel.archives.list(acting(alice), "shop") == []
    assert await panel.storage.pending_uploads() == []


async def test_an_aborted_upload_leaves_nothing(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    transfer = await panel.archives.begin_upload(acting(alice), "shop", "app.zip")
    await transfer.write(app_zip()[:100])
    await transfer.abort()
    await transfer.abort()  # twice is harmless
    assert await panel.archives.list(acting(alice), "shop") == []
    assert await panel.storage.pending_uploads() == []


async def test_only_the_owner_can_upload_list_or_delete(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    bob = (await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)).id
    await upload(panel, alice, "shop", "app.zip", app_zip())
    with pytest.raises(NotFoundError):
        await panel.archives.begin_upload(acting(bob), "shop", "app.zip")
    with pytest.raises(NotFoundError):
        await panel.archives.list(acting(bob), "shop")
    with pytest.raises(NotFoundError):
        await panel.archives.delete(acting(bob), "shop", "v1-app.zip")
    assert len(await panel.archives.list(acting(alice), "shop")) == 1


@pytest.mark.parametrize("filename", ["app.exe", "notes.txt", "../app.zip/..", ".hidden.zip"])
async def test_bad_file_names_are_refused(panel: Panel, filename: str) -> None:
    alice = await alice_with_project(panel)
    with pytest.raises(ValidationError):
        await panel.archives.begin_upload(acting(alice), "shop", filename)


async def test_delete_a_version_and_a_whole_project(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    first = await upload(panel, alice, "shop", "app.zip", app_zip())
    await upload(panel, alice, "shop", "app.tar.zip", app_zip())
    deleted = await panel.archives.delete(acting(alice), "shop", "v1-app.zip")
    assert deleted.id == first.id
    assert [a.name for a in await panel.archives.list(acting(alice), "shop")] == ["v2-app.tar.zip"]
    assert await panel.storage.size(first.storage_key or "") is None
    await panel.archives.delete_project(acting(alice), "shop", "shop")
    with pytest.raises(NotFoundError):
        await panel.archives.list(acting(alice), "shop")
    assert await panel.projects.list(acting(alice)) == []


async def test_a_downloaded_version_uploaded_again_keeps_its_name(panel: Panel) -> None:
    alice = await alice_with_project(panel)
    await upload(panel, alice, "shop", "app.zip", app_zip())
    again = await upload(panel, alice, "shop", "v1-app.zip", app_zip())
    assert again.name == "v2-app.zip"


# -- what a crash leaves: objects stored but never recorded --------------------------------------


@pytest.fixture(params=["local", "s3"])
async def any_storage_panel(request: pytest.FixtureRequest, panel: Panel) -> AsyncIterator[Panel]:
    """The panel with its local directory, or with S3 (moto) in a bucket of its own."""
    if request.param == "local":
        yield panel
        return
    async with panel_on_s3(panel, request.getfixturevalue("s3_server")) as on_s3:
        yield on_s3


async def put_object(panel: Panel, key: str, data: bytes) -> None:
    writer = await panel.storage.open_writer(key)
    await writer.write(data)
    await writer.complete()


async def test_recovery_removes_objects_a_crash_stored_but_never_recorded(
    any_storage_panel: Panel,
) -> None:
    panel = any_storage_panel
    alice = await alice_with_project(panel)
    data = app_zip()
    version = await upload(panel, alice, "shop", "app.zip", data)
    project = await panel.projects.get(acting(alice), "shop")
    # A crash between the end of an upload and its check leaves an object no version names.
    orphan = f"projects/{project.id}/{uuid.uuid4().hex}"
    await put_object(panel, orphan, app_zip())
    await put_object(panel, "other/kept.bin", b"not an archive")  # outside what uploads use

    # Young objects stay: their upload may still be being checked, in this or another process.
    assert await panel.archives.recover() == []
    assert await panel.storage.exists(orphan)

    assert await panel.archives.recover(orphans_older_than=0) == [orphan]
    assert not await panel.storage.exists(orphan)
    # The version and what lies outside the uploads' prefix are untouched.
    assert [a.name for a in await panel.archives.list(acting(alice), "shop")] == [version.name]
    chunks = [chunk async for chunk in panel.archives.open_reader(version)]
    assert b"".join(chunks) == data
    assert await panel.storage.exists("other/kept.bin")
    assert await panel.archives.recover(orphans_older_than=0) == []


async def test_a_panel_set_up_for_s3_over_https_with_its_own_ca_keeps_versions(
    settings: Settings, seaweed_server: SeaweedServer
) -> None:
    # GHST_S3_ENDPOINT=https://... with GHST_S3_CA_BUNDLE naming the server's certificate, as
    # for a MinIO with a self-signed one: uploads are checked and read back through TLS.
    await reset_state(settings)
    tls = with_settings(
        settings,
        s3_endpoint=seaweed_server.https_endpoint_url,
        s3_bucket=f"ghst-tls-{uuid.uuid4().hex[:12]}",
        s3_access_key=seaweed_server.access_key,
        s3_secret_key=seaweed_server.secret_key,
        s3_region=seaweed_server.region,
        s3_ca_bundle=str(seaweed_server.ca_file),
    )
    panel = await Panel.open(tls)
    try:
        alice = await alice_with_project(panel)
        data = app_zip()
        version = await upload(panel, alice, "shop", "app.zip", data)
        assert version.name == "v1-app.zip"
        chunks = [chunk async for chunk in panel.archives.open_reader(version)]
        assert b"".join(chunks) == data
    finally:
        assert isinstance(panel.storage, S3Storage)
        await asyncio.to_thread(drop_bucket, panel.storage)
        await panel.close()


class S3Traffic:
    """What a storage client sent to and read from the S3 server, counted request by request
    as botocore makes them: bytes of parts and objects written, GETs and bytes read back."""

    def __init__(self, storage: S3Storage) -> None:
        self.written = 0
        self.gets = 0
        self.read = 0
        events = storage.client.meta.events
        for operation in ("UploadPart", "PutObject"):
            events.register(f"before-call.s3.{operation}", self._count_body)
        events.register("after-call.s3.GetObject", self._count_get)

    def _count_body(self, params: dict[str, Any], **_: Any) -> None:
        body = params["body"]
        self.written += len(body.getvalue()) if hasattr(body, "getvalue") else len(body)

    def _count_get(self, parsed: dict[str, Any], **_: Any) -> None:
        self.gets += 1
        self.read += int(parsed.get("ContentLength", 0))


def app_tar(compression: str = "", payload: int = 12 << 20) -> bytes:
    """A tar (or tar.gz) with a Dockerfile and `payload` random bytes: several S3 parts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("blob.bin", os.urandom(payload))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
async def test_an_s3_upload_is_written_once_and_never_read_back(
    panel: Panel, seaweed_server: SeaweedServer, kind: str
) -> None:
    # The check runs on the bytes as they arrive (a zip's directory is kept from its end), so
    # storage gets every byte once and gives none back: no download after the upload.
    if kind == "zip":
        data = app_zip({"Dockerfile": b"FROM scratch\n", "blob.bin": os.urandom(12 << 20)})
    else:
        data = app_tar("gz" if kind == "tar.gz" else "")
    async with panel_on_s3(panel, seaweed_server, part_size=MIN_PART_SIZE) as on_s3:
        assert isinstance(on_s3.storage, S3Storage)
        traffic = S3Traffic(on_s3.storage)
        alice = await alice_with_project(on_s3)
        version = await upload(on_s3, alice, "shop", f"app.{kind}", data, chunk=256 * 1024)
        assert (version.name, version.kind, version.size) == (f"v1-app.{kind}", kind, len(data))
        assert (traffic.written, traffic.gets, traffic.read) == (len(data), 0, 0)
        # What was stored is the upload, byte for byte (read here, after the counting).
        chunks = [chunk async for chunk in on_s3.archives.open_reader(version)]
        assert b"".join(chunks) == data


async def test_a_refusal_found_early_in_a_tar_still_comes_at_the_end_of_the_upload(
    panel: Panel, seaweed_server: SeaweedServer
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, size in (("../escape", 10), ("Dockerfile", 13), ("blob.bin", 8 << 20)):
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(bytes(size)))
    data = buffer.getvalue()
    async with panel_on_s3(panel, seaweed_server, part_size=MIN_PART_SIZE) as on_s3:
        assert isinstance(on_s3.storage, S3Storage)
        traffic = S3Traffic(on_s3.storage)
        alice = await alice_with_project(on_s3)
        transfer = await on_s3.archives.begin_upload(acting(alice), "shop", "app.tar")
        for start in range(0, len(data), 256 * 1024):
            await transfer.write(data[start : start + 256 * 1024])  # every write is taken
        with pytest.raises(ArchiveRejected, match=r"contains '\.\.'") as refused:
            await transfer.finish()
        assert refused.value.reason == "path-traversal"
        assert [(a.status, a.size) for a in await on_s3.archives.list(acting(alice), "shop")] == [
            ("rejected", len(data))
        ]
        assert (traffic.gets, traffic.read) == (0, 0)
        assert await on_s3.storage.list_objects("projects/") == []
        assert await on_s3.storage.pending_uploads() == []
