"""Sessions that end, however they end, leave no App, task or session object behind."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import textual.constants
from textual._xterm_parser import XTermParser

from core.panel import Panel
from sshd.driver import SSHDriver
from sshd.server import GhstServer
from sshd.session import PanelSession
from tests.e2e.helpers import (
    PASSWORD,
    add_key,
    create_user,
    new_key,
    running_server,
    write_private_key,
)
from tests.e2e.terminal import (
    AsyncsshTerminal,
    KeyboardInteractiveClient,
    OpenSSHTerminal,
    openssh_command,
)
from tui.app import GhstApp

SESSIONS = 50
BATCH = 10


@pytest.fixture
async def ssh_server(panel: Panel) -> AsyncIterator[GhstServer]:
    async with running_server(panel) as server:
        yield server


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def wait_idle(server: GhstServer, terminal: AsyncsshTerminal | OpenSSHTerminal) -> None:
    await terminal.wait_until(
        lambda: not server.sessions and not server.connections and not server._tasks,
        "the server to forget every session",
    )


async def one_session(server: GhstServer, index: int) -> None:
    """A visitor reaches the sign-up screen, then leaves one of five ways."""
    terminal = await AsyncsshTerminal.connect(
        server.port, f"visitor{index}", client_factory=KeyboardInteractiveClient
    )
    try:
        await terminal.wait_for("Create account")
        how = index % 5
        if how == 0:  # Ctrl+Q in the app
            terminal.send("\x11")
            assert await terminal.wait_closed() == 0
        elif how == 1:  # the client closes the connection
            assert terminal.conn is not None
            terminal.conn.close()
        elif how == 2:  # the connection drops (TCP reset, no SSH goodbye)
            assert terminal.conn is not None
            terminal.conn.abort()
        elif how == 3:  # the client closes its input
            assert terminal.process is not None
            terminal.process.stdin.write_eof()
            await terminal.wait_closed()
        else:  # typing, then the channel closes
            terminal.send("someone@example.com")
            await terminal.wait_for("someone@example.com")
            assert terminal.process is not None
            terminal.process.close()
    finally:
        await terminal.close()


async def test_fifty_sessions_leave_no_app_behind(ssh_server: GhstServer, panel: Panel) -> None:
    stdout, stderr = sys.stdout, sys.stderr
    color_system = textual.constants.COLOR_SYSTEM
    parser_cache = XTermParser._parse_extended_key.cache_info().currsize
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    for start in range(0, SESSIONS, BATCH):
        await asyncio.gather(*(one_session(ssh_server, i) for i in range(start, start + BATCH)))
    # Plus a signed-in user whose login session the watcher tracks.
    await create_user(panel, "alice")
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "alice", password=PASSWORD, preferred_auth="password"
    )
    await terminal.wait_for("Signed in as alice")
    await terminal.close()
    await wait_idle(ssh_server, terminal)

    assert alive(GhstApp) == 0
    assert alive(SSHDriver) == 0
    assert alive(PanelSession) == 0
    # Process-wide state that Textual's run_async would have changed is as it was.
    assert sys.stdout is stdout
    assert sys.stderr is stderr
    assert loop.get_task_factory() is factory
    assert color_system == textual.constants.COLOR_SYSTEM
    # Key sequences were parsed without Textual's class-wide cache (it pins parsers).
    assert XTermParser._parse_extended_key.cache_info().currsize == parser_cache
    leftover = [
        task
        for task in asyncio.all_tasks()
        if (task.get_name().startswith("ssh-") or "GhstApp" in task.get_name())
        and task is not ssh_server._watcher
    ]
    assert leftover == [], leftover


async def test_a_killed_openssh_client_leaves_nothing(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    user = await create_user(panel, "erin")
    key = new_key()
    await add_key(panel, user, key)
    identity = write_private_key(key, tmp_path / "id_ed25519")
    terminal = await OpenSSHTerminal.start(openssh_command(ssh_server.port, "erin", identity))
    try:
        await terminal.wait_for("Signed in as erin")
        assert len(ssh_server.sessions) == 1
        assert terminal.process is not None
        terminal.process.send_signal(signal.SIGKILL)
        await terminal.wait_exit()
        await wait_idle(ssh_server, terminal)
    finally:
        await terminal.close()
    assert alive(GhstApp) == 0


async def test_ended_sessions_are_freed_without_waiting_for_the_collector(
    ssh_server: GhstServer,
) -> None:
    """A dashboard's objects hold cycles, so only the cyclic collector frees them; a server
    that waited for its oldest generation would keep every ended app. With the automatic
    collector off, the server's own collection after a burst of ended sessions frees them."""
    ssh_server.memory.settle = 0.2
    gc.collect()
    gc.disable()
    try:
        for start in range(0, 20, BATCH):
            await asyncio.gather(*(one_session(ssh_server, i) for i in range(start, start + BATCH)))
        terminal = AsyncsshTerminal()
        await wait_idle(ssh_server, terminal)
        # Each burst of ended sessions gets a collection of its own, once it has settled.
        await terminal.wait_until(
            lambda: (
                ssh_server.memory.collections > 0
                and not any(isinstance(obj, GhstApp) for obj in gc.get_objects())
            ),
            "the server's own collections to free every ended app",
        )
    finally:
        gc.enable()
