"""The app as the SSH server sees it: where it starts, errors, farewells, shutdown notices."""

from __future__ import annotations

import logging

import pytest

from core.errors import UnavailableError
from core.panel import Panel
from tests.tui.helpers import SIZE, guest, record_notifications, settle, sign_up
from tui.app import GENERIC_ERROR, GhstApp
from tui.screens.home import HomeScreen
from tui.screens.keys import KeysScreen
from tui.screens.signup import SignUpScreen


async def test_starts_on_home_when_signed_in_else_on_sign_up(panel: Panel) -> None:
    for visitor, screen in [(guest(), SignUpScreen), (await sign_up(panel), HomeScreen)]:
        app = GhstApp(panel, visitor)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, screen)


async def test_ctrl_q_quits_from_any_screen(panel: Panel) -> None:
    app = GhstApp(panel, guest())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_value == "Bye!"

    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("k")
        await settle(pilot)
        await pilot.press("a")  # even inside a dialog, with the focus in a text area
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_value == "Bye!"


async def test_a_core_error_becomes_a_notification_with_its_title(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(user_id: int) -> None:
        raise UnavailableError("The database is not reachable.")

    monkeypatch.setattr(panel.keys, "list", down)
    monkeypatch.setattr(panel.keys, "count", down)
    app = GhstApp(panel, await sign_up(panel))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(KeysScreen())
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
    assert [(n.title, n.message, n.severity) for n in notes] == [
        ("Service unavailable", "The database is not reachable.", "error")
    ] * 2  # Home's counts and the keys screen both asked


async def test_an_unexpected_exception_is_logged_not_shown_and_the_session_lives(
    panel: Panel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(user_id: int) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(panel.sessions, "active_count", broken)
    app = GhstApp(panel, await sign_up(panel))
    notes = record_notifications(app)
    with caplog.at_level(logging.ERROR, logger="tui.app"):
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, HomeScreen)
            # Still usable.
            await pilot.press("k")
            await settle(pilot)
            assert isinstance(app.screen, KeysScreen)
    assert app.return_value is None
    assert [(n.title, n.message) for n in notes] == [("Unexpected error", GENERIC_ERROR)]
    assert "a bug" not in GENERIC_ERROR
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert "alice" in record.getMessage()


async def test_announce_shutdown(panel: Panel) -> None:
    app = GhstApp(panel, guest())
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        app.announce_shutdown(5)
        await pilot.pause()
    assert [(n.title, n.severity) for n in notes] == [("Server shutting down", "warning")]
    assert "closes in 5 s" in notes[0].message


def test_the_command_palette_is_off() -> None:
    """It offers a "save screenshot" that writes files on the server."""
    assert GhstApp.ENABLE_COMMAND_PALETTE is False


async def test_a_crash_is_logged_without_local_variables(
    panel: Panel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken_action() -> None:
        typed_password = "hunter2-never-in-logs"
        raise ZeroDivisionError(f"a bug ({len(typed_password)})")

    app = GhstApp(panel, await sign_up(panel))
    monkeypatch.setattr(app, "action_quit", broken_action)
    with pytest.raises(ZeroDivisionError):
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+q")
            await settle(pilot)
    assert app.return_code == 1
    assert "ZeroDivisionError" in caplog.text
    captured = capsys.readouterr()
    assert "hunter2-never-in-logs" not in captured.err + captured.out + caplog.text
