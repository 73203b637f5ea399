"""A hosted dashboard draws its first screen once, and leaves nothing behind once it is gone.

The app runs as the SSH server runs it (sshd.driver over a Terminal), over the fixed data of
tests/tui/fakes.py; what reaches the client is parsed with pyte, as a terminal would.
"""

from __future__ import annotations

import asyncio
import gc

import pyte
from textual._styles_cache import StylesCache
from textual.app import App, ComposeResult
from textual.widgets.option_list import Option

from sshd.driver import Terminal, create_hosted_app, run_hosted_app
from tests.tui.fakes import ALICE_KEYS, fake_app, signed_in_visitor
from tui.app import GhstApp
from tui.screens.home import HomeScreen
from tui.widgets.option_list import SteadyOptionList

SIZE = (100, 30)


class Client:
    """What the client receives: each write, and the screen they make."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.screen = pyte.Screen(*SIZE)
        self.stream = pyte.ByteStream(self.screen)

    def send(self, data: bytes) -> None:
        self.writes.append(data)
        self.stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)


async def until(condition: object, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def open_home(client: Client) -> tuple[GhstApp, asyncio.Task[object]]:
    terminal = Terminal(client.send, SIZE)
    app = create_hosted_app(lambda: fake_app(signed_in_visitor(), ALICE_KEYS))
    task: asyncio.Task[object] = asyncio.create_task(run_hosted_app(app, terminal))
    await until(lambda: "3 keys" in client.text and "Log out everywhere" in client.text)
    await until(lambda: not any(worker.is_running for worker in app.workers))
    await asyncio.sleep(0.3)  # what it still redraws once its data is in
    return app, task


async def test_the_home_screen_is_drawn_whole_once() -> None:
    client = Client()
    app, task = await open_home(client)
    assert isinstance(app.screen, HomeScreen)
    assert "Signed in as alice" in client.text and "2 active" in client.text
    # One write draws the whole screen; the rest is small. Textual alone drew it about three
    # times over: thrown away inside its start-up batch, laid out again, repainted whole.
    largest = max(len(write) for write in client.writes)
    assert sum(len(write) for write in client.writes) < 2 * largest
    app.exit()
    await task


async def test_finished_dashboards_leave_no_rendered_lines_behind() -> None:
    # By id: holding them (or their widgets) here would keep them alive.
    caches: set[int] = set()
    for _ in range(3):
        client = Client()
        app, task = await open_home(client)
        caches.update(id(widget._styles_cache) for widget in app.screen.walk_children())
        app.exit()
        await task
    del app, task
    gc.collect()
    left = [o for o in gc.get_objects() if isinstance(o, StylesCache) and id(o) in caches]
    assert left == []


class OptionApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SteadyOptionList(Option("word " * 40), Option("last"))


def rows_with(app: App[None], word: str) -> int:
    return sum(word in strip.text for strip in app.screen._compositor.render_strips())


async def test_the_option_list_wraps_again_when_its_width_changes() -> None:
    app = OptionApp()
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.pause()
        wide = rows_with(app, "word")
        await pilot.resize_terminal(100, 24)  # taller only
        await pilot.pause()
        assert rows_with(app, "word") == wide
        await pilot.resize_terminal(40, 24)
        await pilot.pause()
        assert rows_with(app, "word") > wide
        assert rows_with(app, "last") == 1
