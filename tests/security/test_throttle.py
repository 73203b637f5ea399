"""Guessing in parallel: password logins, sign-up floods and made-up names, all over SSH.

Attacks: 20 password logins fired at once for one account (each would have passed a check made
before the earlier ones were recorded); one address creating account after account; a client
asking for thousands of project names that do not exist, each of which the Redis cache kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
from redis.asyncio import Redis

from core.panel import Panel
from core.settings import Settings
from sshd.server import GhstServer
from tests.actors import SYSTEM
from tests.conftest import reset_state, with_settings
from tests.e2e.helpers import PASSWORD, create_user, running_server, sign_up_on_screen
from tests.e2e.terminal import AsyncsshTerminal, KeyboardInteractiveClient
from tests.e2e.transfers import account, sftp_client

GUESSES = 20
USER_LIMIT = 5  # the default GHST_LOGIN_MAX_FAILURES
THROTTLED = "Too many failed logins"


class BannerClient(asyncssh.SSHClient):
    """Keeps the authentication banners the server sends (where ghst says "too many")."""

    def __init__(self) -> None:
        self.banners: list[str] = []

    def auth_banner_received(self, msg: str, lang: str) -> None:
        self.banners.append(msg)


async def password_login(server: GhstServer, username: str, password: str) -> tuple[bool, str]:
    """One SSH password login: (whether it got in, the banners the server sent)."""
    client = BannerClient()

    def factory() -> BannerClient:
        return client

    try:
        conn = await asyncssh.connect(
            "127.0.0.1",
            server.port,
            username=username,
            password=password,
            client_keys=None,
            agent_path=None,
            known_hosts=None,
            preferred_auth="password",
            client_factory=factory,
        )
    except asyncssh.PermissionDenied:
        return False, "".join(client.banners)
    conn.close()
    await conn.wait_closed()
    return True, "".join(client.banners)


@contextlib.contextmanager
def counting_password_checks(panel: Panel) -> Iterator[list[int]]:
    """Count the bcrypt checks the panel runs (the real hasher still does each one)."""
    checks: list[int] = []
    real_verify = panel.hasher.verify

    async def verify(password: str, hashed: str | None) -> bool:
        checks.append(1)
        return await real_verify(password, hashed)

    panel.hasher.verify = verify  # type: ignore[method-assign]
    try:
        yield checks
    finally:
        del panel.hasher.verify


@pytest.fixture(params=["redis", "redis-down"])
async def guarded_server(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[tuple[GhstServer, Panel]]:
    """The SSH server, with Redis, or with Redis unreachable (counted in the process)."""
    await reset_state(settings)
    if request.param == "redis-down":
        settings = with_settings(settings, redis_url="redis://127.0.0.1:1/0")
    opened = await Panel.open(settings)
    try:
        async with running_server(opened) as server:
            yield server, opened
    finally:
        await opened.close()


async def test_parallel_guesses_get_no_more_checks_than_the_limit(
    guarded_server: tuple[GhstServer, Panel],
) -> None:
    ssh_server, panel = guarded_server
    await create_user(panel, "alice")
    with counting_password_checks(panel) as checks:
        results = await asyncio.gather(
            *(password_login(ssh_server, "alice", f"guess number {n}") for n in range(GUESSES))
        )
        assert not any(got_in for got_in, _ in results)
        # At most the limit of the 20 guesses reached bcrypt; the others were refused first.
        assert len(checks) <= USER_LIMIT
        throttled = [banner for _, banner in results if THROTTLED in banner]
        assert len(throttled) >= GUESSES - USER_LIMIT
        # The 21st attempt, with the right password, is refused too: the account is locked
        # for the window, whoever tries.
        got_in, banner = await password_login(ssh_server, "alice", PASSWORD)
        assert not got_in
        assert "Too many failed logins. Try again in 15 minutes." in banner
        assert len(checks) <= USER_LIMIT


@pytest.fixture
async def signup_panel(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    opened = await Panel.open(with_settings(settings, signup_max_per_ip=3))
    yield opened
    await opened.close()


async def test_a_sign_up_flood_from_one_address_is_throttled(signup_panel: Panel) -> None:
    panel = signup_panel
    async with running_server(panel) as server:
        assert server.port is not None
        for name in ("flood-a", "flood-b", "flood-c"):
            terminal = await AsyncsshTerminal.connect(
                server.port, name, client_factory=KeyboardInteractiveClient
            )
            try:
                await sign_up_on_screen(terminal, name)
            finally:
                await terminal.close()
        terminal = await AsyncsshTerminal.connect(
            server.port, "flood-d", client_factory=KeyboardInteractiveClient
        )
        try:
            await submit_sign_up(terminal, "flood-d")
            await terminal.wait_for("Too many accounts were created from your address.")
            assert "Signed in as" not in terminal.text()
        finally:
            await terminal.close()
    assert await panel.accounts.find_by_username("flood-d") is None
    assert sorted(user.username for user in await panel.accounts.list(SYSTEM)) == [
        "flood-a",
        "flood-b",
        "flood-c",
    ]


async def submit_sign_up(terminal: AsyncsshTerminal, username: str) -> None:
    """Fill the sign-up form as `sign_up_on_screen` does and submit it, expecting nothing."""
    await terminal.wait_for("Create account")
    await terminal.wait_focus("Email")
    terminal.send(f"{username}@example.com\t")
    await terminal.wait_focus("Password")
    terminal.send(PASSWORD + "\t")
    await terminal.wait_focus("Confirm password")
    terminal.send(PASSWORD)
    await terminal.wait_until(
        lambda: terminal.text().count("•" * len(PASSWORD)) >= 2, "both passwords typed"
    )
    terminal.send("\r")


MISS_CAP = 20


@pytest.fixture
async def small_cache_panel(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    opened = await Panel.open(with_settings(settings, cache_max_misses=MISS_CAP))
    yield opened
    await opened.close()


async def cached_misses(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        count = 0
        async for key in redis.scan_iter("ghst:projects:*:project:*"):
            if await redis.get(key) == b"null":
                count += 1
        return count
    finally:
        await redis.aclose()


async def test_made_up_project_names_cannot_fill_the_cache(
    small_cache_panel: Panel, tmp_path: Path
) -> None:
    panel = small_cache_panel
    mallory = await account(panel, tmp_path, "mallory", projects=("real-one",))
    async with running_server(panel) as server, sftp_client(server, mallory) as (_, sftp):
        for n in range(3 * MISS_CAP):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(f"/made-up-{n}")
        # Still right after the cap: missing names are missing, real ones are there.
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat("/made-up-0")
        assert (await sftp.stat("/real-one")).type == asyncssh.FILEXFER_TYPE_DIRECTORY
    assert 0 < await cached_misses(panel.settings.redis_url) <= MISS_CAP
