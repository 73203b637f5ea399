"""Shared by the SFTP and scp end-to-end tests: accounts with keys, archives, OpenSSH clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from core.archives.service import Archive
from core.identity.accounts import User
from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key

OPENSSH_OPTIONS = (
    *("-F", "/dev/null"),
    *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
    *("-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"),
)
CLIENT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Account:
    user: User | None  # None: a visitor (a name without an account)
    name: str
    key: asyncssh.SSHKey
    identity: Path

    @property
    def id(self) -> int:
        assert self.user is not None
        return self.user.id


async def account(
    panel: Panel, tmp_path: Path, name: str, *, projects: tuple[str, ...] = ()
) -> Account:
    user = await create_user(panel, name)
    key = new_key()
    await add_key(panel, user, key)
    for project in projects:
        await panel.projects.create(acting(user.id), project)
    return Account(user, name, key, write_private_key(key, tmp_path / f"{name}.key"))


def visitor(tmp_path: Path, name: str) -> Account:
    key = new_key()
    return Account(None, name, key, write_private_key(key, tmp_path / f"{name}.key"))


def app_zip(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        contents = files or {"Dockerfile": b"FROM scratch\nCOPY . /\n", "index.html": b"hello"}
        for name, data in contents.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def big_zip(size: int) -> bytes:
    """A valid app of about `size` bytes (stored random data does not compress)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Dockerfile", b"FROM scratch\n")
        archive.writestr("blob.bin", os.urandom(size))
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run(command: list[str], *, cwd: Path | None = None, stdin: bytes | None = None) -> Result:
    """Run a client without blocking the loop the server runs on."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def sftp_command(server: GhstServer, who: Account, batch: Path, *extra: str) -> list[str]:
    assert server.port is not None
    return [
        "/usr/bin/sftp",
        *OPENSSH_OPTIONS,
        *("-i", str(who.identity), "-P", str(server.port)),
        *("-b", str(batch)),
        *extra,
        f"{who.name}@127.0.0.1",
    ]


async def sftp_batch(
    server: GhstServer, who: Account, commands: str, tmp_path: Path, *extra: str
) -> Result:
    """`sftp -b` with these commands, run in `tmp_path` (local files are relative to it)."""
    batch = tmp_path / "batch.txt"
    batch.write_text("".join(line.strip() + "\n" for line in commands.strip().splitlines()))
    return await run(sftp_command(server, who, batch, *extra), cwd=tmp_path)


def scp_command(server: GhstServer, who: Account, *args: str) -> list[str]:
    assert server.port is not None
    return [
        "/usr/bin/scp",
        *OPENSSH_OPTIONS,
        *("-i", str(who.identity), "-P", str(server.port)),
        *args,
    ]


def remote(who: Account, path: str) -> str:
    return f"{who.name}@127.0.0.1:{path}"


@contextlib.asynccontextmanager
async def sftp_client(
    server: GhstServer, who: Account, **options: object
) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]]:
    """asyncssh's SFTP client, for exact statuses and for ending a session abruptly."""
    conn = await asyncssh.connect(
        "127.0.0.1",
        server.port,
        username=who.name,
        client_keys=[who.key],
        known_hosts=None,
        preferred_auth="publickey",
    )
    try:
        async with conn.start_sftp_client(**options) as sftp:
            yield conn, sftp
    finally:
        conn.close()
        with contextlib.suppress(Exception):
            await conn.wait_closed()


async def versions(panel: Panel, who: Account, project: str) -> list[Archive]:
    return await panel.archives.list(acting(who.id), project)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def nothing_left(panel: Panel, server: GhstServer) -> bool:
    """No upload in progress anywhere: no pending storage upload, no live transfer session."""
    return not await panel.storage.pending_uploads() and not server.transfers


def bytes_received(server: GhstServer) -> int:
    """What the uploads in progress on `server` received so far."""
    return sum(
        upload.received
        for transfer in server.transfers
        if transfer.server is not None
        for upload in transfer.server.uploads
    )


async def kill_mid_upload(
    command: list[str], cwd: Path, server: GhstServer, panel: Panel, *, after: int = 256 * 1024
) -> None:
    """Start a (slow) client, SIGKILL it once `after` bytes arrived, wait for the server to
    drop the upload; then end what is left of the client (its ssh)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # a group of its own: its ssh child is ended with it below
    )

    async def started() -> bool:
        assert process.returncode is None, "the client finished before it could be killed"
        return bytes_received(server) >= after

    async def dropped() -> bool:
        return await nothing_left(panel, server)

    try:
        await eventually(started, "the upload to be under way", within=20)
        assert await panel.storage.pending_uploads() != []
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await eventually(dropped, "the unfinished upload to be dropped")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            process.kill()
            await process.wait()
