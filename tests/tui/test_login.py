"""Log in against the real PostgreSQL and Redis: sessions, wrong passwords, throttling, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from textual.widgets import Input

from core.panel import Panel
from core.settings import Settings
from tests.actors import SYSTEM, acting
from tests.conftest import with_settings
from tests.tui.fakes import key_line, public_key
from tests.tui.helpers import (
    PASSWORD,
    SIZE,
    click,
    error_text,
    fill,
    guest,
    record_notifications,
    settle,
)
from tui.app import GhstApp
from tui.screens.home import HomeScreen
from tui.screens.login import LoginScreen
from tui.screens.signup import SignUpScreen


async def open_login(app: GhstApp) -> None:
    await app.switch_screen(LoginScreen())


async def session_method(panel: Panel, jti: object) -> str:
    async with panel.pool.acquire() as conn:
        method: str = await conn.fetchval("SELECT auth_method FROM sessions WHERE jti = $1", jti)
    return method


async def test_log_in_with_the_right_password(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    visitor = guest("alice")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await pilot.pause()
        assert app.screen.query_one("#username", Input).value == "alice"
        assert app.focused is app.screen.query_one("#password", Input)
        await pilot.press(*PASSWORD, "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert visitor.user == user
    assert visitor.session is not None
    assert await session_method(panel, visitor.session.jti) == "password"
    assert await panel.sessions.ended([visitor.session.jti]) == set()


async def test_a_wrong_password_is_refused_and_can_be_retried(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    visitor = guest("alice")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await fill(pilot, password="not the password")
        await click(pilot, "#login")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert error_text(pilot) == "Wrong username or password."
        # The password is cleared and focused for the next try; the username stays.
        assert app.screen.query_one("#password", Input).value == ""
        assert app.focused is app.screen.query_one("#password", Input)
        assert app.screen.query_one("#username", Input).value == "alice"
        assert visitor.session is None

        await pilot.press(*PASSWORD, "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_an_unknown_user_gets_the_same_message(panel: Panel) -> None:
    app = GhstApp(panel, guest("nobody"))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert error_text(pilot) == "Wrong username or password."


async def test_empty_fields_are_caught_before_asking_the_server(panel: Panel) -> None:
    app = GhstApp(panel, guest("Nobody"))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await pilot.press("enter")
        await pilot.pause()
        assert error_text(pilot) == "Enter your username."
        await fill(pilot, username="alice")
        await click(pilot, "#login")
        await pilot.pause()
        assert error_text(pilot) == "Enter your password."
        assert app.focused is app.screen.query_one("#password", Input)


@pytest.fixture
async def strict_panel(panel: Panel, settings: Settings) -> AsyncIterator[Panel]:
    """A second Panel on the same (freshly reset) services that throttles after 2 failures."""
    strict = await Panel.open(with_settings(settings, login_max_failures=2))
    yield strict
    await strict.close()


async def test_repeated_failures_are_throttled(strict_panel: Panel) -> None:
    await strict_panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    app = GhstApp(strict_panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        for _ in range(2):
            await fill(pilot, password="wrong password")
            await pilot.press("enter")
            await settle(pilot)
            assert error_text(pilot) == "Wrong username or password."
        # Now even the right password is refused until the window passes.
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert error_text(pilot) == "Too many failed logins. Try again in 15 minutes."


async def test_a_blocked_account_cannot_log_in(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.accounts.block(SYSTEM, "alice")
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert error_text(pilot) == "This account is blocked. Contact the operator."


async def test_log_in_attaches_the_presented_key(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    key = public_key("desktop")
    visitor = guest("alice", presented_key=key)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert [k.fingerprint for k in await panel.keys.list(acting(user.id))] == [key.fingerprint]
    assert visitor.presented_key is None


async def test_log_in_without_the_key_when_unchecked(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    app = GhstApp(panel, guest("alice", presented_key=public_key("desktop")))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await click(pilot, "#attach-key")
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert await panel.keys.list(acting(user.id)) == []


async def test_a_key_someone_else_owns_is_a_warning_not_a_failure(panel: Panel) -> None:
    owner = await panel.accounts.sign_up("owner", "owner@example.com", PASSWORD)
    await panel.keys.add(acting(owner.id), key_line("desktop"))
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    app = GhstApp(panel, guest("alice", presented_key=public_key("desktop")))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await fill(pilot, password=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    fingerprint = public_key("desktop").fingerprint
    assert (
        f"The key {fingerprint} is already registered to an account.",
        "Key not attached",
        "warning",
    ) in [(n.message, n.title, n.severity) for n in notes]
    assert await panel.keys.list(acting(alice.id)) == []


async def test_sign_up_link(panel: Panel) -> None:
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        await open_login(app)
        await click(pilot, "#to-signup")
        await pilot.pause()
        assert isinstance(app.screen, SignUpScreen)


async def test_a_sign_up_that_cannot_open_a_session_sends_the_user_to_log_in(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account exists by then: the form must not stay and say the name is taken."""

    async def database_gone(*args: object) -> None:
        raise asyncpg.PostgresConnectionError("connection lost")

    monkeypatch.setattr(panel.sessions, "open", database_gone)
    visitor = guest("alice")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, email="alice@example.com", password=PASSWORD, password_confirm=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#username", Input).value == "alice"
        assert "Your account was created" in str(app.screen.query_one("#notice").render())
    assert [n.title for n in notes] == ["Unexpected error"]
    assert await panel.accounts.find_by_username("alice") is not None
    assert visitor.user is None and visitor.session is None
