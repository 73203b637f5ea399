"""The admin views' prompt line: a keystroke repaints it, and a text longer than the line
still scrolls to show its end."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen

from tests.tui.fakes_admin import admin_app
from tests.tui.helpers import settle
from tui.widgets.prompt_input import PromptInput


def prompt_text(pilot: Pilot[Any]) -> str:
    prompt = pilot.app.screen.query_one("#prompt", PromptInput)
    return "".join(prompt.render_line(y).text for y in range(prompt.size.height + 2))


async def test_typing_a_filter_lays_nothing_out(monkeypatch: Any) -> None:
    app = admin_app()
    layouts: list[Screen[Any]] = []
    original = Screen._refresh_layout

    def counted(screen: Screen[Any], *args: Any, **kwargs: Any) -> None:
        layouts.append(screen)
        original(screen, *args, **kwargs)

    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        monkeypatch.setattr(Screen, "_refresh_layout", counted)
        await pilot.press(*"alic")
        await settle(pilot)
        assert layouts == []
        assert "alic" in prompt_text(pilot)


async def test_a_filter_longer_than_the_line_shows_its_end() -> None:
    app = admin_app()
    typed = "".join(f"{n % 10}" for n in range(80)) + "END"
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *typed)
        await settle(pilot)
        prompt = app.screen.query_one("#prompt", PromptInput)
        assert prompt.value == typed
        assert prompt.scroll_x > 0
        assert "END" in prompt_text(pilot)
