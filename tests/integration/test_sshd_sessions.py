"""Live SSH sessions ended by the server: revocation, blocking, shutdown; and reaping clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncssh
import pytest

from core.panel import Panel
from core.settings import Settings
from sshd.server import SERVER_STOPPED, SESSION_ENDED, GhstServer
from tests.actors import SYSTEM, acting
from tests.conftest import with_settings
from tests.e2e.helpers import PASSWORD, create_user, running_server, sign_up_on_screen
from tests.e2e.terminal import AsyncsshTerminal, KeyboardInteractiveClient

# The bound: a revoked or blocked login's SSH sessions end within 5 seconds.
REVOCATION_BOUND = 5.0


@pytest.fixture
async def ssh_server(panel: Panel) -> AsyncIterator[GhstServer]:
    async with running_server(panel) as server:
        yield server


async def signed_in(server: GhstServer, username: str) -> AsyncsshTerminal:
    terminal = await AsyncsshTerminal.connect(
        server.port, username, password=PASSWORD, preferred_auth="password"
    )
    await terminal.wait_for(f"Signed in as {username}")
    return terminal


async def assert_ended_within_bound(terminals: list[AsyncsshTerminal], started: float) -> None:
    for terminal in terminals:
        await terminal.wait_closed(within=REVOCATION_BOUND)
    assert time.monotonic() - started < REVOCATION_BOUND
    for terminal in terminals:
        assert SESSION_ENDED in terminal.transcript.decode(errors="replace")
        assert terminal.exit_status == 0


async def test_log_out_everywhere_ends_every_open_session(
    ssh_server: GhstServer, panel: Panel
) -> None:
    user = await create_user(panel, "alice")
    first = await signed_in(ssh_server, "alice")
    second = await signed_in(ssh_server, "alice")
    bystander = await create_user(panel, "bob")
    other = await signed_in(ssh_server, "bob")
    try:
        started = time.monotonic()
        assert await panel.sessions.revoke_all(acting(user.id)) == 2
        await assert_ended_within_bound([first, second], started)
        # Someone else's session is untouched.
        assert not other.closed
        assert await panel.sessions.active_count(acting(bystander.id)) == 1
    finally:
        for terminal in (first, second, other):
            await terminal.close()


async def test_blocking_a_user_ends_their_sessions(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "mallory")
    terminal = await signed_in(ssh_server, "mallory")
    try:
        started = time.monotonic()
        await panel.accounts.block(SYSTEM, "mallory")
        await assert_ended_within_bound([terminal], started)
    finally:
        await terminal.close()


async def test_a_visitor_who_signs_up_is_watched_from_then_on(
    ssh_server: GhstServer, panel: Panel
) -> None:
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "newbie", client_factory=KeyboardInteractiveClient
    )
    try:
        await sign_up_on_screen(terminal, "newbie")
        user = await panel.accounts.find_by_username("newbie")
        assert user is not None
        started = time.monotonic()
        await panel.sessions.revoke_all(acting(user.id))
        await assert_ended_within_bound([terminal], started)
    finally:
        await terminal.close()


async def test_graceful_shutdown_warns_then_disconnects(panel: Panel) -> None:
    server = GhstServer.for_panel(panel, host="127.0.0.1", port=0)
    await server.start()
    await create_user(panel, "carol")
    terminal = await signed_in(server, "carol")
    try:
        closing = asyncio.create_task(server.close(grace=2.0))
        await terminal.wait_for("restarting")  # the notice, while the session still runs
        assert not terminal.closed
        assert await terminal.wait_closed() == 0
        assert SERVER_STOPPED in terminal.transcript.decode(errors="replace")
        await asyncio.wait_for(closing, 15)
        assert not server.sessions
        assert not server.connections
        # No new connections once closed.
        with pytest.raises(OSError):
            await asyncssh.connect(
                "127.0.0.1", server.port, username="carol", password=PASSWORD, known_hosts=None
            )
        # The panel belongs to the caller: still usable after the server stopped.
        assert await panel.accounts.find_by_username("carol") is not None
    finally:
        await terminal.close()
        await server.close()


class FreezingProxy:
    """A TCP proxy between a client and the server that can stop forwarding without closing:
    what a network drop (or a suspended laptop) looks like to the server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while not self.frozen.is_set():
                data = await source.read(65536)
                if not data or self.frozen.is_set():
                    break
                sink.write(data)
                await sink.drain()
        # Frozen: hold the sockets open, forward nothing.

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_keepalive_reaps_a_frozen_client(panel: Panel, settings: Settings) -> None:
    server = GhstServer(
        panel,
        with_settings(settings, keepalive_interval=1, keepalive_count=2),
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    proxy = FreezingProxy(server.port or 0)
    try:
        await create_user(panel, "dave")
        terminal = await AsyncsshTerminal.connect(
            await proxy.start(), "dave", password=PASSWORD, preferred_auth="password"
        )
        try:
            await terminal.wait_for("Signed in as dave")
            assert len(server.sessions) == 1
            proxy.frozen.set()
            await terminal.wait_until(
                lambda: not server.sessions and not server.connections,
                "the server to drop the silent client",
            )
        finally:
            await terminal.close()
    finally:
        await proxy.close()
        await server.close()


@contextlib.asynccontextmanager
async def server_without_poll(panel: Panel) -> AsyncIterator[GhstServer]:
    """A server whose safety check of every login never comes during a test: what ends a
    session there is the revocation's event, or its expiry."""
    server = GhstServer.for_panel(panel, host="127.0.0.1", port=0)
    server.revocation_poll = 3600.0
    await server.start()
    try:
        yield server
    finally:
        await server.close(grace=0)


@pytest.mark.parametrize("how", ["log out everywhere", "block"])
async def test_a_revocation_made_by_another_process_ends_the_session_without_polling(
    panel: Panel, settings: Settings, how: str
) -> None:
    user = await create_user(panel, "erin")
    await create_user(panel, "frank")
    other_process = await Panel.open(settings)  # its own pool: as another `ghst serve` would
    try:
        async with server_without_poll(panel) as server:
            await asyncio.wait_for(panel.events.listening.wait(), REVOCATION_BOUND)
            terminal = await signed_in(server, "erin")
            bystander = await signed_in(server, "frank")
            try:
                started = time.monotonic()
                if how == "block":
                    await other_process.accounts.block(SYSTEM, "erin")
                else:
                    assert await other_process.sessions.revoke_all(acting(user.id)) == 1
                await assert_ended_within_bound([terminal], started)
                # Only the user whose logins changed was touched.
                assert not bystander.closed
            finally:
                await terminal.close()
                await bystander.close()
    finally:
        await other_process.close()


async def test_an_expired_login_ends_its_session_without_polling(
    panel: Panel, settings: Settings
) -> None:
    ttl = 4
    short_logins = await Panel.open(with_settings(settings, session_ttl=ttl))
    try:
        await create_user(short_logins, "gina")
        async with server_without_poll(short_logins) as server:
            started = time.monotonic()
            terminal = await signed_in(server, "gina")
            try:
                await terminal.wait_closed(within=ttl + REVOCATION_BOUND)
                assert time.monotonic() - started < ttl + REVOCATION_BOUND
                assert SESSION_ENDED in terminal.transcript.decode(errors="replace")
            finally:
                await terminal.close()
    finally:
        await short_logins.close()
