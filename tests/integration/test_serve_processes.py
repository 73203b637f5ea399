"""`ghst serve --processes 2`: two serving processes on one SSH port, as an operator runs it.

Real processes, real signals, OpenSSH clients. Which process serves a connection is the
kernel's choice (SO_REUSEPORT); the tests open dashboards until both processes serve some, by
matching each process's sockets to the established connections on the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.actor import Actor
from core.panel import Panel
from core.settings import Settings
from sshd.server import SERVER_STOPPED, SESSION_ENDED
from tests.actors import as_user
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command
from tests.integration.test_sshd_cli import GHST, ghst_env

REVOCATION_BOUND = 5.0  # the bound, in every process
MAX_CLIENTS = 16  # the odds that 16 connections all land on one of two processes: 2^-15


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


@contextlib.asynccontextmanager
async def ghst_serve(settings: Settings, *args: str, **env: str) -> AsyncIterator[Served]:
    process = await asyncio.create_subprocess_exec(
        str(GHST),
        "serve",
        *args,
        env=ghst_env(settings, **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a process group of its own, for the Ctrl+C test
    )
    assert process.stderr is not None
    served = Served(process, 0)
    try:
        while not served.port:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "ghst serve exited early:\n" + "".join(served.log)
            served.log.append(line)
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                served.port = int(match.group(1))
        reader = asyncio.create_task(_drain(process.stderr, served.log))
        yield served
        await asyncio.wait_for(reader, 30)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def connections_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections to `port` that each process holds."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
                established.add(int(fields[9]))
    return {pid: len(socket_inodes(pid) & established) for pid in pids}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


async def dashboards_on_every_process(served: Served, command: list[str]) -> list[OpenSSHTerminal]:
    children = served.children
    assert len(children) == 2
    terminals: list[OpenSSHTerminal] = []
    counts: dict[int, int] = {}
    while len(terminals) < MAX_CLIENTS:
        terminal = await OpenSSHTerminal.start(command)
        terminals.append(terminal)
        await terminal.wait_for("Signed in as alice")
        counts = connections_by_process(served.port, children)
        if all(counts.values()):
            return terminals
    raise AssertionError(f"every connection went to one process: {counts}")


@pytest.mark.parametrize("how", ["log out everywhere", "block"])
async def test_an_ended_login_ends_its_sessions_in_every_process(
    panel: Panel, settings: Settings, tmp_path: Path, how: str
) -> None:
    user = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, user, key)
    command = openssh_command(0, "alice", write_private_key(key, tmp_path / "id"))
    terminals: list[OpenSSHTerminal] = []
    async with ghst_serve(
        settings, "--processes", "2", "--no-worker", GHST_NGINX_MANAGED="0"
    ) as served:
        try:
            command[command.index("-p") + 1] = str(served.port)
            terminals = await dashboards_on_every_process(served, command)
            started = time.monotonic()
            if how == "block":
                await panel.accounts.block(Actor.system("test"), "alice")
            else:
                assert await panel.sessions.revoke_all(as_user(user.id)) == len(terminals)
            for terminal in terminals:
                assert await terminal.wait_exit(REVOCATION_BOUND) == 0
            assert time.monotonic() - started < REVOCATION_BOUND
            for terminal in terminals:
                assert SESSION_ENDED in terminal.transcript.decode(errors="replace")
        finally:
            for terminal in terminals:
                await terminal.close()
            served.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(served.process.wait(), 30) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_stops_every_process_and_nginx(
    panel: Panel, settings: Settings, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM to the parent (a service manager) or SIGINT to the whole process group (Ctrl+C
    in a terminal): every session is told, every child and the panel's nginx exit, exit 0."""
    user = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, user, key)
    command = openssh_command(0, "alice", write_private_key(key, tmp_path / "id"))
    terminals: list[OpenSSHTerminal] = []
    async with ghst_serve(settings, "--processes", "2") as served:
        try:
            assert any("nginx serves" in line for line in served.log)
            command[command.index("-p") + 1] = str(served.port)
            terminals = await dashboards_on_every_process(served, command)
            everything = descendants(served.process.pid)
            assert len(everything) > 2  # both serving processes, and nginx's master and workers
            if signum == signal.SIGINT:
                os.killpg(served.process.pid, signal.SIGINT)
            else:
                served.process.send_signal(signal.SIGTERM)
            for terminal in terminals:
                await terminal.wait_for("restarting")  # the notice during the grace period
                assert await terminal.wait_exit(30) == 0
                assert SERVER_STOPPED in terminal.transcript.decode(errors="replace")
            assert await asyncio.wait_for(served.process.wait(), 30) == 0
        finally:
            for terminal in terminals:
                await terminal.close()
    assert [pid for pid in everything if alive(pid)] == []
    assert "".join(served.log).count("SSH server stopped") == 2
    assert "Traceback" not in "".join(served.log)
