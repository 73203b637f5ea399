"""Archive versions through the one upload path, against real PostgreSQL, Redis and storage."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from collections.abc import AsyncIterator

import pytest

from core.archives.checks import ArchiveRejected
from core.archives.storage import S3Storage
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
