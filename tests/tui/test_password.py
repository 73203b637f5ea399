"""Change password against the real PostgreSQL."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from core.errors import AuthenticationError
from core.panel import Panel
from tests.tui.helpers import (
    PASSWORD,
    REMOTE_ADDR,
    SIZE,
    click,
    error_text,
    fill,
    record_notifications,
    settle,
    sign_up,
)
from tui.app import GhstApp
from tui.screens.home import HomeScreen
from tui.screens.password import PasswordScreen

NEW_PASSWORD = "a much better passphrase"


async def open_password(app: GhstApp) -> None:
    await app.push_screen(PasswordScreen())


async def test_a_wrong_current_password_is_refused(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await open_password(app)
        await fill(pilot, current="not my password", new=NEW_PASSWORD, confirm=NEW_PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PasswordScreen)
        assert error_text(pilot) == "Your current password is not right."
        assert app.screen.query_one("#current", Input).value == ""
        assert app.focused is app.screen.query_one("#current", Input)
    # Nothing changed.
    assert await panel.accounts.authenticate("alice", PASSWORD, REMOTE_ADDR)


@pytest.mark.parametrize(
    ("values", "message", "focused"),
    [
        (
            {"new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
            "Enter your current password.",
            "#current",
        ),
        (
            {"current": PASSWORD, "new": "short", "confirm": "short"},
            "A password has at least 10 characters.",
            "#new",
        ),
        (
            {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD + "?"},
            "The new passwords do not match.",
            "#confirm",
        ),
    ],
    ids=["no-current", "short", "mismatch"],
)
async def test_form_mistakes_are_caught_before_the_server(
    panel: Panel, values: dict[str, str], message: str, focused: str
) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await open_password(app)
        await fill(pilot, **values)
        await click(pilot, "#change")
        await settle(pilot)
        assert error_text(pilot) == message
        assert app.focused is app.screen.query_one(focused, Input)


async def test_the_same_password_again_is_refused_by_core(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await open_password(app)
        await fill(pilot, current=PASSWORD, new=PASSWORD, confirm=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert error_text(pilot) == "The new password is the same as the current one."


async def test_change_password(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause()
        # Keyboard only: the current password has the focus, Tab moves on, Enter submits.
        await pilot.press(*PASSWORD, "tab", *NEW_PASSWORD, "tab", *NEW_PASSWORD, "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert [(n.title, n.severity) for n in notes] == [("Password changed", "information")]
    user = await panel.accounts.authenticate("alice", NEW_PASSWORD, REMOTE_ADDR)
    assert user.username == "alice"
    with pytest.raises(AuthenticationError):
        await panel.accounts.authenticate("alice", PASSWORD, REMOTE_ADDR)


async def test_escape_goes_back_without_changing_anything(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.parametrize("log_out_others", [True, False])
async def test_changing_the_password_can_log_out_the_other_sessions(
    panel: Panel, log_out_others: bool
) -> None:
    visitor = await sign_up(panel)
    assert visitor.session is not None and visitor.user is not None
    elsewhere = await panel.sessions.open(visitor.user.id, "publickey", "10.9.9.9")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_password(app)
        await fill(pilot, current=PASSWORD, new=NEW_PASSWORD, confirm=NEW_PASSWORD)
        if not log_out_others:
            await click(pilot, "#logout-others")
        await click(pilot, "#change")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    ended = await panel.sessions.ended([visitor.session.jti, elsewhere.jti])
    assert ended == ({elsewhere.jti} if log_out_others else set())
    assert ("1 other session logged out" in notes[-1].message) is log_out_others
