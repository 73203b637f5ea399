"""One SSH connection, many channels: OpenSSH's ControlMaster after the login was ended.

Attack: keep a master connection open (`ssh -M -S path -fN`), then, after the account was
logged out everywhere, its password changed or the account blocked, open new channels through
it (`sftp -o ControlPath=path`). It used to list the projects without logging in again. Now
every new channel checks its connection's login before it serves anything, and an ended login
closes its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from core.panel import Panel
from core.settings import Settings
from sshd.server import SESSION_ENDED, GhstServer
from tests.actors import acting
from tests.e2e.helpers import PASSWORD
from tests.e2e.transfers import (
    OPENSSH_OPTIONS,
    Account,
    Result,
    account,
    eventually,
    run,
)
from tests.integration.test_sshd_cli import ghst_env, run_ghst

NEW_PASSWORD = "a brand new secret 42"
# A client that can only go through the master: no key, no password of its own.
NO_LOGIN_OF_ITS_OWN = (
    *("-o", "ControlMaster=no"),
    *("-o", "PubkeyAuthentication=no", "-o", "PasswordAuthentication=no"),
    *("-o", "KbdInteractiveAuthentication=no"),
)


@dataclass(frozen=True)
class Master:
    socket: Path
    log: Path
    port: int
    user: str

    def options(self) -> list[str]:
        return [*OPENSSH_OPTIONS, "-p", str(self.port), "-S", str(self.socket)]

    async def alive(self) -> bool:
        check = await run(["/usr/bin/ssh", *self.options(), "-O", "check", self.target])
        return check.status == 0

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1"

    async def sftp_ls(self, tmp_path: Path) -> Result:
        """`sftp -o ControlPath=…`: a new channel on the master's connection."""
        batch = tmp_path / "ls.txt"
        batch.write_text("ls /\n")
        return await run(
            [
                "/usr/bin/sftp",
                *OPENSSH_OPTIONS,
                *NO_LOGIN_OF_ITS_OWN,
                *("-o", f"ControlPath={self.socket}", "-P", str(self.port)),
                *("-b", str(batch)),
                self.target,
            ],
            cwd=tmp_path,
        )


@contextlib.asynccontextmanager
async def control_master(
    server: GhstServer, who: Account, tmp_path: Path, *, password: str | None = None
) -> AsyncIterator[Master]:
    """`ssh -M -S path -fN`, logged in with the key, or with `password` (through askpass)."""
    assert server.port is not None
    master = Master(tmp_path / "master.sock", tmp_path / "master.log", server.port, who.name)
    if password is None:
        login = ["-i", str(who.identity), "-o", "BatchMode=yes"]
        env = None
    else:
        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o700)
        login = [
            *("-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"),
            *("-o", "PreferredAuthentications=password"),
        ]
        env = {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "PATH": "/usr/bin"}
    options = master.options()
    if password is not None:  # OpenSSH takes the first value given: BatchMode=yes must go
        at = options.index("BatchMode=yes")
        del options[at - 1 : at + 1]
    command = ["/usr/bin/ssh", *options, *login, "-E", str(master.log), "-M", "-fN", master.target]
    # `-f`: ssh goes to the background once logged in; its stdio must not be our pipes.
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert await asyncio.wait_for(process.wait(), 30) == 0, master.log.read_text()
    try:
        assert await master.alive()
        yield master
    finally:
        if await master.alive():
            await run(["/usr/bin/ssh", *master.options(), "-O", "exit", master.target])


async def logged_in_through_the_master(master: Master, tmp_path: Path) -> None:
    listing = await master.sftp_ls(tmp_path)
    assert listing.status == 0, listing.output
    assert "shop" in listing.stdout


async def assert_refused_and_closed(
    master: Master, server: GhstServer, who: Account, tmp_path: Path
) -> Result:
    """A new channel through the master is refused, and the master's connection closes."""
    listing = await master.sftp_ls(tmp_path)
    assert listing.status != 0, listing.output
    assert "shop" not in listing.stdout

    async def closed() -> bool:
        return not await master.alive()

    await eventually(closed, "the master connection to be closed")
    assert not any(
        login.login is not None and login.login.ssh_username == who.name for login in server.logins
    )
    return listing


async def test_logging_out_everywhere_closes_a_control_master(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    async with control_master(ssh_server, alice, tmp_path) as master:
        await logged_in_through_the_master(master, tmp_path)
        # From another session: the dashboard's "log out everywhere".
        await panel.sessions.revoke_all(acting(alice.id))
        await assert_refused_and_closed(master, ssh_server, alice, tmp_path)


async def test_a_password_change_closes_a_control_master_logged_in_with_it(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    async with control_master(ssh_server, alice, tmp_path, password=PASSWORD) as master:
        await logged_in_through_the_master(master, tmp_path)
        # The owner changes the password from a dashboard of their own (kept open).
        dashboard = await panel.sessions.open(alice.id, "publickey", "10.0.0.1")
        ended = await panel.accounts.change_password(
            acting(alice.id), PASSWORD, NEW_PASSWORD, "10.0.0.1", keep_session=dashboard.jti
        )
        assert ended == 1  # the master's login
        await assert_refused_and_closed(master, ssh_server, alice, tmp_path)
        assert await panel.sessions.ended([dashboard.jti]) == set()


async def test_blocking_the_account_closes_a_control_master(
    ssh_server: GhstServer, panel: Panel, settings: Settings, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    async with control_master(ssh_server, alice, tmp_path) as master:
        await logged_in_through_the_master(master, tmp_path)
        status, _out, err = await run_ghst("user", "block", "alice", env=ghst_env(settings))
        assert status == 0, err
        await assert_refused_and_closed(master, ssh_server, alice, tmp_path)


async def test_a_new_channel_checks_its_login_by_itself(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    """Without the watcher (stopped here), the channel's own check refuses it and says why."""
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    async with control_master(ssh_server, alice, tmp_path) as master:
        await logged_in_through_the_master(master, tmp_path)
        assert ssh_server._watcher is not None
        ssh_server._watcher.cancel()
        await panel.sessions.revoke_all(acting(alice.id))
        listing = await assert_refused_and_closed(master, ssh_server, alice, tmp_path)
        assert SESSION_ENDED in listing.stderr, listing.output
