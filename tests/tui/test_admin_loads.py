"""The admin list's loads: one query at a time, the last key's rows drawn, none cancelled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from core.actor import Actor
from core.admin.read_models import UserRow
from tests.tui.fakes_admin import FakeAdmin, admin_app
from tests.tui.helpers import settle
from tui.admin.base import HOLD_FOR_ROWS
from tui.widgets.lines_table import LinesTable
from tui.widgets.prompt_input import PromptInput

SIZE = (120, 30)


@dataclass
class SlowAdmin(FakeAdmin):
    """Users' queries wait for `gate`; `searches` is every query asked, `cancelled` those
    abandoned half way."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    searches: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    async def users(
        self, actor: Actor, search: str = "", *, after: str | None = None, limit: int = 50
    ) -> list[UserRow]:
        self.searches.append(search)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(search)
            raise
        return await super().users(actor, search, after=after, limit=limit)


def keys_of(pilot: Pilot[Any]) -> list[str]:
    return list(pilot.app.screen.query_one("#rows", LinesTable).keys)


async def test_typing_during_a_query_runs_one_more_query_for_the_last_key() -> None:
    admin = SlowAdmin()
    admin.gate.set()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        admin.gate.clear()  # the database is slow: "b"'s query is out while "o", "b" come
        admin.searches.clear()
        await pilot.press("slash", "b", "o", "b")
        assert admin.searches == ["b"]
        admin.gate.set()
        await settle(pilot)
        assert admin.searches == ["b", "bob"]
        assert admin.cancelled == []
        assert keys_of(pilot) == ["bob"]
        status = str(app.screen.query_one("#status", Static).render())
        assert "filter /bob" in status


async def test_the_filter_cleared_during_its_query_shows_every_row() -> None:
    admin = SlowAdmin()
    admin.gate.set()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        admin.gate.clear()
        admin.searches.clear()
        await pilot.press("slash", "c", "escape", "escape")  # the filter, then none again
        admin.gate.set()
        await settle(pilot)
        assert admin.searches[-1] == ""
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        assert "filter" not in str(app.screen.query_one("#status", Static).render())


def count_frames(app: Any) -> list[int]:
    """A list that grows by one each frame the app writes to its terminal."""
    frames: list[int] = []
    display = app._display

    def counted(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            frames.append(len(frames))
        display(screen, renderable)

    app._display = counted
    return frames


async def test_a_filter_key_and_its_rows_are_drawn_in_one_frame() -> None:
    admin = SlowAdmin()
    admin.gate.set()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        app.screen.query_one("#prompt").cursor_blink = False  # (a blink is a frame)
        await settle(pilot)
        frames = count_frames(app)
        await pilot.press("c")
        await settle(pilot)
        assert keys_of(pilot) == ["carol"]
        assert len(frames) == 1


async def test_a_slow_query_does_not_hide_the_key_typed() -> None:
    admin = SlowAdmin()
    admin.gate.set()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        app.screen.query_one("#prompt").cursor_blink = False
        await settle(pilot)
        frames = count_frames(app)
        admin.gate.clear()  # the rows never come while this test looks
        await pilot.press("c")
        for _ in range(500):  # the hold ends (HOLD_FOR_ROWS) while the query is still out
            if frames:
                break
            await pilot.pause(HOLD_FOR_ROWS / 5)
        assert admin.searches[-1] == "c"
        assert len(frames) == 1  # the prompt's "c", drawn without its rows
        assert app.screen.query_one("#prompt", PromptInput).value == "c"
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        admin.gate.set()
        await settle(pilot)
        assert keys_of(pilot) == ["carol"]
        assert len(frames) == 2
