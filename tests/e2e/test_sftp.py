"""SFTP end to end: OpenSSH's `sftp -b` (and asyncssh's client for exact statuses) against the
server, uploads going through the archive service into the panel's storage."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import asyncssh
import pytest

from core.archives.storage import MIN_PART_SIZE, STORAGE_DOWN, LocalDirectoryStorage
from core.errors import UnavailableError
from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM, acting
from tests.conftest import panel_on_s3
from tests.e2e.helpers import running_server
from tests.e2e.transfers import (
    Account,
    account,
    app_zip,
    big_zip,
    eventually,
    kill_mid_upload,
    nothing_left,
    sftp_batch,
    sftp_client,
    sftp_command,
    versions,
    visitor,
    write,
)
from tests.services import MotoServer, SeaweedServer

pytestmark = pytest.mark.e2e


@pytest.fixture
async def alice(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "alice", projects=("shop",))


@pytest.fixture
async def bob(panel: Panel, tmp_path: Path) -> Account:
    return await account(panel, tmp_path, "bob", projects=("diary",))


async def test_put_list_get_and_delete_a_version(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    data = app_zip()
    write(tmp_path / "app.zip", data)
    result = await sftp_batch(
        ssh_server,
        alice,
        """
        put app.zip shop/
        cd shop
        put app.zip
        ls -l
        get v1-app.zip first.zip
        cd /
        ls -l
        get /shop/v2-app.zip second.zip
        """,
        tmp_path,
    )
    assert result.status == 0, result.output
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v2-app.zip", "v1-app.zip"]
    # Listed with their size, as files of the project directory; projects are directories.
    listing = result.stdout
    assert f"{len(data)}" in listing and "v1-app.zip" in listing and "v2-app.zip" in listing
    assert any(
        line.startswith("-rw-r--r--") and "v1-app.zip" in line for line in listing.splitlines()
    )
    assert any(
        line.startswith("drwxr-xr-x") and line.endswith("shop") for line in listing.splitlines()
    )
    # Each upload says which version it became.
    assert "ghst: shop: stored app.zip as v1-app.zip" in result.stderr
    assert "ghst: shop: stored app.zip as v2-app.zip" in result.stderr
    assert (tmp_path / "first.zip").read_bytes() == data
    assert (tmp_path / "second.zip").read_bytes() == data

    result = await sftp_batch(ssh_server, alice, "rm shop/v1-app.zip\nls shop", tmp_path)
    assert result.status == 0, result.output
    assert "shop/v2-app.zip" in result.stdout.splitlines()[-1]
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v2-app.zip"]
    assert await nothing_left(panel, ssh_server)


async def test_a_refused_archive_fails_with_its_reason(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    write(tmp_path / "app.zip", app_zip({"README.md": b"no app in here"}))
    result = await sftp_batch(ssh_server, alice, "put app.zip shop/", tmp_path)
    assert result.status != 0
    [refused] = await versions(panel, alice, "shop")
    assert refused.status == "rejected" and refused.version is None
    # OpenSSH prints only "Failure" for the status: the reason comes on stderr.
    assert f"ghst: shop/app.zip: {refused.message}" in result.stderr
    assert await nothing_left(panel, ssh_server)
    # Not a file of the project: refused uploads are history, not versions.
    result = await sftp_batch(ssh_server, alice, "ls shop", tmp_path)
    assert result.status == 0 and "app.zip" not in result.stdout


async def test_asyncssh_client_gets_the_reason_in_the_status(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (_, sftp):
        with pytest.raises(asyncssh.SFTPFailure) as refused:
            async with sftp.open("/shop/app.tar.gz", "wb") as file:
                await file.write(b"not an archive at all")
        with pytest.raises(asyncssh.SFTPFailure, match="not an archive name"):
            async with sftp.open("/shop/notes.txt", "wb") as file:
                await file.write(b"x")
    [history] = await versions(panel, alice, "shop")
    assert refused.value.reason == history.message


async def test_another_users_project_looks_like_a_missing_one(
    ssh_server: GhstServer, panel: Panel, alice: Account, bob: Account, tmp_path: Path
) -> None:
    data = app_zip()
    write(tmp_path / "app.zip", data)
    assert (await sftp_batch(ssh_server, alice, "put app.zip shop/", tmp_path)).status == 0

    async def attempts(project: str) -> list[list[str]]:
        outputs = []
        for command in (
            f"ls /{project}",
            f"ls -l /{project}/",
            f"cd /{project}",
            f"get /{project}/v1-app.zip stolen.zip",
            f"put app.zip /{project}/",
            f"put app.zip /{project}/app.zip",
            f"rm /{project}/v1-app.zip",
        ):
            result = await sftp_batch(ssh_server, bob, command, tmp_path)
            assert result.status != 0, command
            outputs.append(sorted(result.output.replace(project, "<project>").splitlines()))
        return outputs

    assert await attempts("shop") == await attempts("nope")
    assert not (tmp_path / "stolen.zip").exists()
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]

    async with sftp_client(ssh_server, bob) as (_, sftp):
        for path in ("/shop", "/shop/v1-app.zip"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("/shop/v1-app.zip", "rb")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("/shop/app.zip", "wb")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.remove("/shop/v1-app.zip")
        assert [name for name in await sftp.listdir("/") if not name.startswith(".")] == ["diary"]
    assert await nothing_left(panel, ssh_server)


@pytest.mark.parametrize(
    "path",
    [
        "//etc/passwd",
        "/shop//v1-app.zip",
        "/../etc/passwd",
        "../../etc/passwd",
        "/shop/../../etc/passwd",
        "/shop/v1-app.zip/../../etc",
        "/../shop",  # above the root and back down: refused, not resolved
        "/shop/../../diary",
        "/shop/v1-app.zip/..",  # a file is not a directory
    ],
)
async def test_traversal_is_refused(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path, path: str
) -> None:
    await panel.projects.create(acting(alice.id), "diary")
    async with sftp_client(ssh_server, alice) as (_, sftp):
        async with sftp.open("/shop/app.zip", "wb") as file:
            await file.write(app_zip())
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.listdir(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open(path, "rb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.open(path + "/app.zip", "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.mkdir(path)
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.realpath(path)
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]
    assert await versions(panel, alice, "diary") == []


async def test_dot_dot_goes_up_to_the_root_and_no_further(
    ssh_server: GhstServer, panel: Panel, alice: Account, bob: Account, tmp_path: Path
) -> None:
    await panel.projects.create(acting(alice.id), "diary-2")
    data = app_zip()
    async with sftp_client(ssh_server, alice) as (_, sftp):
        async with sftp.open("/shop/app.zip", "wb") as file:
            await file.write(data)
        for path in ("/shop/..", "/..", "..", "../..", "/shop/../..", "shop/../"):
            assert await sftp.realpath(path) == "/", path
            assert sorted(await sftp.listdir(path)) == [".", "..", "diary-2", "shop"], path
        assert await sftp.realpath("/shop/../diary-2") == "/diary-2"
        assert await sftp.listdir("/diary-2/../shop") == [".", "..", "v1-app.zip"]
        async with sftp.open("/diary-2/../shop/v1-app.zip", "rb") as file:
            assert await file.read() == data
        async with sftp.open("/shop/../diary-2/app.zip", "wb") as file:
            await file.write(data)
    assert [a.name for a in await versions(panel, alice, "diary-2")] == ["v1-app.zip"]

    # OpenSSH's sftp: `cd ..` from a project is back at the list of projects.
    result = await sftp_batch(ssh_server, alice, "cd shop\nls\ncd ..\npwd\nls", tmp_path)
    assert result.status == 0, result.output
    assert "Remote working directory: /\n" in result.stdout
    assert "v1-app.zip" in result.stdout  # the first `ls`, in the project
    assert sorted(result.stdout.rsplit("sftp> ls", 1)[1].split()) == ["diary-2", "shop"]

    # Through ".." another user's project is still just missing, and says nothing more.
    async with sftp_client(ssh_server, bob) as (_, sftp):
        for path in ("/diary/../shop", "/diary/../shop/v1-app.zip"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("/diary/../shop/app.zip", "wb")
        assert [n for n in await sftp.listdir("/diary/..") if not n.startswith(".")] == ["diary"]
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]


async def test_anything_but_the_tree_operations_is_refused(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    async with sftp_client(ssh_server, alice) as (_, sftp):
        async with sftp.open("/shop/app.zip", "wb") as file:
            await file.write(app_zip())
        refused: list[Callable[[], Awaitable[object]]] = [
            lambda: sftp.rename("/shop/v1-app.zip", "/shop/v9-app.zip"),
            lambda: sftp.posix_rename("/shop/v1-app.zip", "/shop/other.zip"),
            lambda: sftp.symlink("/shop/v1-app.zip", "/shop/link.zip"),
            lambda: sftp.link("/shop/v1-app.zip", "/shop/link.zip"),
            lambda: sftp.readlink("/shop/v1-app.zip"),
            lambda: sftp.chmod("/shop/v1-app.zip", 0o777),
            lambda: sftp.chmod("/shop", 0o777),
            lambda: sftp.chmod("/", 0o777),
            lambda: sftp.utime("/shop/v1-app.zip", (0, 0)),
            lambda: sftp.mkdir("/shop/sub"),
            lambda: sftp.statvfs("/"),
            lambda: sftp.open("/app.zip", "wb"),  # outside a project
            lambda: sftp.open("/shop/sub/app.zip", "wb"),
            lambda: sftp.open("/shop/v1-app.zip", "ab"),  # appending to a version
            lambda: sftp.open("/shop/v1-app.zip", "r+b"),
            lambda: sftp.open("/shop", "rb"),
            lambda: sftp.remove("/shop"),
        ]
        for attempt in refused:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await attempt()
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["shop"]


async def test_out_of_order_writes_abort_the_upload(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (_, sftp):
        file = await sftp.open("/shop/app.zip", "wb")
        await file.write(b"x" * 1000, 0)
        with pytest.raises(asyncssh.SFTPFailure, match="uploads must be sequential"):
            await file.write(b"y" * 1000, 5000)
        with pytest.raises(asyncssh.SFTPFailure, match="uploads must be sequential"):
            await file.close()
    assert await versions(panel, alice, "shop") == []
    assert await nothing_left(panel, ssh_server)


async def test_over_quota_upload_is_aborted_with_the_quota_status(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE users SET storage_quota_bytes = 100000 WHERE id = $1", alice.id)
    write(tmp_path / "big.zip", big_zip(300_000))
    result = await sftp_batch(ssh_server, alice, "put big.zip shop/", tmp_path)
    assert result.status != 0
    assert "ghst: shop/big.zip: This upload does not fit in your storage quota" in result.stderr
    assert await versions(panel, alice, "shop") == []
    assert await nothing_left(panel, ssh_server)

    # A client speaking SFTP v6 gets the quota status itself (v3 has none: "failure").
    async with sftp_client(ssh_server, alice, sftp_version=6) as (_, sftp):
        with pytest.raises(asyncssh.SFTPQuotaExceeded, match="storage quota"):
            async with sftp.open("/shop/big.zip", "wb") as file:
                for offset in range(0, 300_000, 32768):
                    await file.write(b"z" * 32768, offset)
    assert await versions(panel, alice, "shop") == []
    assert await nothing_left(panel, ssh_server)


async def test_sftp_killed_mid_upload_leaves_nothing(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    write(tmp_path / "big.zip", big_zip(3 * 1024 * 1024))
    batch = write(tmp_path / "batch.txt", b"put big.zip shop/\n")
    # -l: 4 Mbit/s, so the 3 MiB take ~6 s and the client dies half way.
    command = sftp_command(ssh_server, alice, batch, "-l", "4000")
    await kill_mid_upload(command, tmp_path, ssh_server, panel)
    assert await versions(panel, alice, "shop") == []


async def test_a_connection_dropped_mid_upload_leaves_nothing(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (conn, sftp):
        file = await sftp.open("/shop/app.zip", "wb")
        for offset in range(0, 512 * 1024, 32768):
            await file.write(b"x" * 32768, offset)
        assert await panel.storage.pending_uploads() != []
        conn.abort()  # no close of the file, no EOF: the TCP connection just goes

    async def dropped() -> bool:
        return await nothing_left(panel, ssh_server)

    await eventually(dropped, "the upload to be dropped")
    assert await versions(panel, alice, "shop") == []


async def test_downloads_serve_any_offset(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    data = big_zip(700_000)
    async with sftp_client(ssh_server, alice) as (_, sftp):
        async with sftp.open("/shop/app.zip", "wb") as upload:
            for offset in range(0, len(data), 65536):
                await upload.write(data[offset : offset + 65536], offset)
        async with sftp.open("/shop/v1-app.zip", "rb") as file:
            assert (await file.stat()).size == len(data)

            async def read(size: int, offset: int) -> bytes:
                return cast(bytes, await file.read(size, offset))

            assert await read(1000, 300_000) == data[300_000:301_000]
            assert await read(1000, 10) == data[10:1010]  # backwards: a new reader
            assert await read(100_000, 1010) == data[1010:101_010]  # on from there
            assert await read(100, len(data) - 50) == data[-50:]
            assert await read(100, len(data)) == b""
        # asyncssh's own get and put: parallel requests, the "ranges" extension.
        await sftp.get("/shop/v1-app.zip", str(tmp_path / "got.zip"))
        assert (tmp_path / "got.zip").read_bytes() == data
        await sftp.put(str(tmp_path / "got.zip"), "/shop/again.zip")
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v2-again.zip", "v1-app.zip"]
    assert await nothing_left(panel, ssh_server)


async def test_a_service_that_is_down_is_reported_as_such(
    ssh_server: GhstServer,
    panel: Panel,
    alice: Account,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path / "app.zip", app_zip())

    async def storage_down(*args: object) -> None:
        raise UnavailableError(STORAGE_DOWN)

    monkeypatch.setattr(panel.archives, "begin_upload", storage_down)
    result = await sftp_batch(ssh_server, alice, "put app.zip shop/", tmp_path)
    assert result.status != 0
    assert f"ghst: shop/app.zip: {STORAGE_DOWN}" in result.stderr

    async def crash(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(panel.archives, "begin_upload", crash)
    result = await sftp_batch(ssh_server, alice, "put app.zip shop/", tmp_path)
    assert result.status != 0
    assert "ghst: shop/app.zip: The panel could not do this right now" in result.stderr
    assert "secret internals" not in result.output


async def test_mkdir_creates_a_project_and_rmdir_points_to_the_dashboard(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    result = await sftp_batch(ssh_server, alice, "mkdir notes\nls", tmp_path)
    assert result.status == 0, result.output
    assert "notes" in result.stdout and "shop" in result.stdout
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["notes", "shop"]

    result = await sftp_batch(ssh_server, alice, "mkdir Bad_Name", tmp_path)
    assert result.status != 0
    assert "ghst: Bad_Name: A project name uses lowercase letters" in result.stderr

    result = await sftp_batch(ssh_server, alice, "rmdir notes", tmp_path)
    assert result.status != 0
    assert "Delete projects in the dashboard" in result.stderr
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["notes", "shop"]


async def test_visitors_get_no_file_access(
    ssh_server: GhstServer, panel: Panel, alice: Account, tmp_path: Path
) -> None:
    stranger = visitor(tmp_path, "stranger")
    write(tmp_path / "app.zip", app_zip())
    result = await sftp_batch(ssh_server, stranger, "ls /\nput app.zip shop/", tmp_path)
    assert result.status != 0
    assert "File transfers need an account" in result.stderr
    async with sftp_client(ssh_server, stranger) as (_, sftp):
        for attempt in (
            sftp.realpath("."),
            sftp.stat("/"),
            sftp.listdir("/"),
            sftp.open("/shop/app.zip", "wb"),
            sftp.mkdir("/mine"),
        ):
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await attempt
    assert await versions(panel, alice, "shop") == []
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["shop"]


async def test_the_dashboard_still_answers_on_other_channels(
    ssh_server: GhstServer, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (conn, sftp):
        assert await sftp.realpath(".") == "/"
        usage = await conn.run("status", check=False)
        assert usage.exit_status == 2  # the command interface's usage text
        assert "usage: ssh panel status" in str(usage.stderr)
        whoami = await conn.run("whoami", check=False)
        assert whoami.exit_status == 0
        assert "alice" in str(whoami.stdout)


async def test_server_shutdown_drops_unfinished_uploads_without_waiting(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (conn, sftp):
        file = await sftp.open("/shop/app.zip", "wb")
        await file.write(b"x" * 65536, 0)
        idle = await conn.start_sftp_client()  # a second, idle session on the connection
        assert await idle.realpath(".") == "/"
        started = asyncio.get_running_loop().time()
        await ssh_server.close(grace=0)
        assert asyncio.get_running_loop().time() - started < 3
    assert await nothing_left(panel, ssh_server)
    assert await versions(panel, alice, "shop") == []


async def test_the_server_removes_uploads_a_crash_left_when_it_starts(panel: Panel) -> None:
    storage = panel.storage
    assert isinstance(storage, LocalDirectoryStorage)
    # Two uploads never finished: one nothing was written to for two hours (a crashed run
    # left it), one running now (another panel process sharing the storage, say).
    crashed = await storage.open_writer("projects/1/crashed")
    running = await storage.open_writer("projects/1/running")
    two_hours_ago = time.time() - 2 * 3600
    for entry in os.scandir(storage.incoming):
        if entry.name.startswith("projects%2F1%2Fcrashed."):
            os.utime(entry.path, (two_hours_ago, two_hours_ago))
    assert await storage.pending_uploads() == ["projects/1/crashed", "projects/1/running"]
    async with running_server(panel):

        async def only_the_running_one_left() -> bool:
            return await storage.pending_uploads() == ["projects/1/running"]

        await eventually(only_the_running_one_left, "the crashed upload to be removed")
    await crashed.abort()
    await running.abort()
    assert await storage.pending_uploads() == []


async def test_a_clean_up_that_fails_at_start_is_a_warning_not_a_stop(
    panel: Panel,
    alice: Account,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def storage_down(older_than: float = 0) -> list[str]:
        raise UnavailableError(STORAGE_DOWN)

    monkeypatch.setattr(panel.archives, "recover", storage_down)
    with caplog.at_level(logging.WARNING, logger="sshd.server"):
        async with running_server(panel) as server:
            result = await sftp_batch(server, alice, "ls", tmp_path)
            assert result.status == 0, result.output
            assert "shop" in result.stdout

            async def warned() -> bool:
                return "could not remove unfinished uploads" in caplog.text

            await eventually(warned, "a warning about the failed clean-up")


@pytest.mark.parametrize("how", ["everywhere", "others"])
async def test_logging_out_everywhere_ends_open_transfers(
    ssh_server: GhstServer, panel: Panel, alice: Account, how: str
) -> None:
    dashboard = await panel.sessions.open(alice.id, "password", "127.0.0.1")
    async with sftp_client(ssh_server, alice) as (_, sftp):
        file = await sftp.open("/shop/app.zip", "wb")
        await file.write(b"PK\x03\x04 the first bytes of an upload")
        await eventually(lambda: has_transfer_session(ssh_server), "the transfer's session")
        if how == "everywhere":  # Home's "log out everywhere"
            assert (
                await panel.sessions.revoke_all(acting(alice.id)) == 2
            )  # the dashboard, the transfer
        else:  # the password screen's "log out other sessions", from the dashboard
            assert await panel.sessions.revoke_others(acting(alice.id), dashboard.jti) == 1
        await ssh_server.check_sessions()  # what the watcher does every second

        async def transfer_ended() -> bool:
            try:
                await sftp.listdir("/")
            except (asyncssh.Error, OSError):
                return True
            return False

        await eventually(transfer_ended, "the transfer to end")
    # The upload in progress was dropped: no version, nothing half-stored (the client may see
    # its channel close before the server finished dropping it).
    await eventually(lambda: nothing_left(panel, ssh_server), "the upload to be dropped")
    assert await versions(panel, alice, "shop") == []


async def test_logging_out_of_one_dashboard_leaves_transfers_alone(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    dashboard = await panel.sessions.open(alice.id, "password", "127.0.0.1")
    data = app_zip()
    async with sftp_client(ssh_server, alice) as (_, sftp):
        async with sftp.open("/shop/app.zip", "wb") as file:
            await file.write(data[:10])
            await eventually(lambda: has_transfer_session(ssh_server), "the transfer's session")
            await panel.sessions.revoke(SYSTEM, dashboard.jti)  # "log out" on that dashboard
            await ssh_server.check_sessions()
            await file.write(data[10:], 10)
        assert await sftp.listdir("/shop") == [".", "..", "v1-app.zip"]
    assert [a.name for a in await versions(panel, alice, "shop")] == ["v1-app.zip"]

    # A transfer's login session ends with it (the dashboard's was ended above).
    async def no_session_left() -> bool:
        return await panel.sessions.active_count(acting(alice.id)) == 0

    await eventually(no_session_left, "the transfer's session to close")


async def has_transfer_session(server: GhstServer) -> bool:
    return any(transfer.jti is not None for transfer in server.transfers)


# -- with S3 storage: uploads larger than a part are multipart uploads -------------------------


@pytest.fixture(params=["seaweedfs", "moto"])
async def s3_panel(panel: Panel, request: pytest.FixtureRequest) -> AsyncIterator[Panel]:
    """The panel storing into S3: SeaweedFS (on disk, signatures and checksums checked) or moto."""
    s3_server: SeaweedServer | MotoServer = request.getfixturevalue(
        {"seaweedfs": "seaweed_server", "moto": "s3_server"}[request.param]
    )
    async with panel_on_s3(panel, s3_server, part_size=MIN_PART_SIZE) as on_s3:
        yield on_s3


async def test_s3_round_trip_and_a_dropped_multipart_upload(
    s3_panel: Panel, tmp_path: Path
) -> None:
    alice = await account(s3_panel, tmp_path, "alice", projects=("shop",))
    data = big_zip(MIN_PART_SIZE + 512 * 1024)  # two parts
    write(tmp_path / "app.zip", data)
    async with running_server(s3_panel) as server:
        result = await sftp_batch(
            server, alice, "put app.zip shop/\nget shop/v1-app.zip back.zip", tmp_path
        )
        assert result.status == 0, result.output
        assert (tmp_path / "back.zip").read_bytes() == data

        async with sftp_client(server, alice) as (conn, sftp):
            file = await sftp.open("/shop/app.zip", "wb")
            for offset in range(0, len(data), 65536):
                await file.write(data[offset : offset + 65536], offset)
            assert await s3_panel.storage.pending_uploads() != []  # a part went up already
            conn.abort()

        async def dropped() -> bool:
            return await nothing_left(s3_panel, server)

        await eventually(dropped, "the multipart upload to be aborted")
    assert [a.name for a in await versions(s3_panel, alice, "shop")] == ["v1-app.zip"]


async def test_blocking_a_user_ends_their_open_transfer_within_5_seconds(
    ssh_server: GhstServer, panel: Panel, alice: Account
) -> None:
    async with sftp_client(ssh_server, alice) as (_, sftp):
        file = await sftp.open("/shop/app.zip", "wb")
        await file.write(b"PK\x03\x04 the first bytes of an upload")
        await panel.accounts.block(SYSTEM, "alice")
        started = asyncio.get_running_loop().time()

        async def transfer_ended() -> bool:
            try:
                await sftp.listdir("/")
            except (asyncssh.Error, OSError):
                return True
            return False

        await eventually(transfer_ended, "the blocked user's transfer to end", within=10)
        assert asyncio.get_running_loop().time() - started < 5
    # The upload in progress is dropped (the server cleans up just after the channel closes):
    # no version, nothing half-stored.
    await eventually(lambda: nothing_left(panel, ssh_server), "the upload to be dropped")
    assert await versions(panel, alice, "shop") == []
