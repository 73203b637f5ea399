"""A PostgreSQL that goes away: users get a clear message, nothing stored is lost, and the panel
recovers by itself when the server is back."""

from __future__ import annotations

import asyncio

import pytest

from core.db.pool import DATABASE_DOWN
from core.errors import UnavailableError
from core.panel import Panel
from tests.actors import acting
from tests.services import PostgresServer
from tests.tui.helpers import SIZE, settle
from tui.app import GhstApp
from tui.screens.keys import KeysScreen
from tui.visitor import Visitor

PASSWORD = "correct horse battery"


async def test_database_down_is_a_clear_error_and_recovers(
    fragile_panel: Panel, own_postgres: PostgresServer
) -> None:
    panel = fragile_panel
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)

    await asyncio.to_thread(own_postgres.stop, "fast")  # a restart: clients cut off
    with pytest.raises(UnavailableError) as down:
        await panel.accounts.get(alice.id)
    assert down.value.message == DATABASE_DOWN
    # A login while the database is down is "unavailable", never "wrong password".
    with pytest.raises(UnavailableError):
        await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")
    with pytest.raises(UnavailableError):
        await panel.keys.list(acting(alice.id))

    await asyncio.to_thread(own_postgres.resume)
    assert (await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")).id == alice.id


async def test_the_dashboard_says_so_and_keeps_the_session(
    fragile_panel: Panel, own_postgres: PostgresServer
) -> None:
    panel = fragile_panel
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    app = GhstApp(panel, Visitor("10.0.0.1", "alice", user=alice, session=session))
    shown: list[tuple[str, str]] = []
    original_notify = app.notify

    def notify(message: str, *, title: str = "", **kwargs: object) -> None:
        shown.append((title, message))
        original_notify(message, title=title, **kwargs)  # type: ignore[arg-type]

    app.notify = notify  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await asyncio.to_thread(own_postgres.stop, "fast")  # a restart: clients cut off
        await pilot.press("k")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)  # still running, on the screen asked for
        assert ("Service unavailable", DATABASE_DOWN) in shown
        await asyncio.to_thread(own_postgres.resume)
        await pilot.press("escape")
        await settle(pilot)
    assert app.return_code in (0, None)
