"""The logs screen against the real PostgreSQL and DeploymentService.

Build logs are rows a worker writes (updated here with SQL, as a build would); runtime logs come
from the service's runtime, which these tests replace with a stream they control (Docker's own
log stream is tested with the deployer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from textual import events

from core.deploy.service import Deployment
from core.panel import Panel
from core.projects.service import Project
from tests.tui.helpers import SIZE, record_notifications, settle
from tests.tui.test_deployments import insert_deployment, key_bar, owner_of, text, wait_for
from tui.app import GhstApp
from tui.screens.logs import LogsScreen
from tui.widgets.log_view import DEFAULT_MAX_LINES, ThrottledLog, clean_line

FLOOD = 20_000


def shown(app: GhstApp) -> list[str]:
    view = app.screen.query_one(ThrottledLog)
    return [line for line in view.lines if line]


async def append_log(panel: Panel, deployment_id: int, text: str, state: str = "") -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE deployments SET log = log || $2,"
            " state = COALESCE(NULLIF($3, ''), state),"
            " finished_at = CASE WHEN $3 IN ('', 'building') THEN finished_at ELSE now() END"
            " WHERE id = $1",
            deployment_id,
            text,
            state,
        )


class CountingReads:
    """Counts the build-log reads the screen makes through the real service."""

    def __init__(self, panel: Panel) -> None:
        self.reads = 0
        original = panel.deployments.build_log

        async def build_log(*args: Any, **kwargs: Any) -> tuple[str, int]:
            self.reads += 1
            return await original(*args, **kwargs)

        panel.deployments.build_log = build_log  # type: ignore[method-assign]


# Build logs ---------------------------------------------------------------------------------


async def test_a_build_log_follows_the_build_until_it_ends(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    building = await insert_deployment(
        panel,
        project,
        "v1-app.zip",
        "building",
        seconds=None,
        started=datetime.now(UTC),
        log="Step 1/2 : FROM scratch\n",
    )
    reads = CountingReads(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(LogsScreen("shop", building))
        await wait_for(pilot, lambda: shown(app) == ["Step 1/2 : FROM scratch"])
        assert text(app, "#logs-status").startswith("Building… The log updates by itself.")
        assert "f Pause" in key_bar(app)

        await append_log(panel, building, "Step 2/2 : COPY . /srv\nSending cont")
        await wait_for(pilot, lambda: len(shown(app)) == 2)
        assert shown(app)[1] == "Step 2/2 : COPY . /srv"  # the unfinished line waits

        await append_log(panel, building, "ext 2 kB\n\x1b[31mError\x1b[0m: no CMD", "failed")
        await wait_for(pilot, lambda: app.screen.finished)  # type: ignore[attr-defined]
        await settle(pilot)  # the polling has stopped: nothing left running
        assert shown(app) == [
            "Step 1/2 : FROM scratch",
            "Step 2/2 : COPY . /srv",
            "Sending context 2 kB",
            "Error: no CMD",  # colours dropped; the last line without its newline
        ]
        status = text(app, "#logs-status")
        assert (
            status.startswith(f"#{building} failed after ") and "This is the whole log." in status
        )
        assert "Pause" not in key_bar(app) and "Follow" not in key_bar(app)
        after = reads.reads
        await pilot.pause(1.2)  # two poll intervals
        assert reads.reads == after


async def test_a_finished_build_log_is_read_once(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    failed = await insert_deployment(
        panel,
        project,
        "v1-app.zip",
        "failed",
        seconds=8,
        error="The build failed.",
        log="".join(f"line {n}\n" for n in range(300)),
    )
    reads = CountingReads(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(LogsScreen("shop", failed))
        await settle(pilot)
        assert reads.reads == 1
        assert len(shown(app)) == 300 and shown(app)[-1] == "line 299"
        assert text(app, "#logs-status") == (
            f"#{failed} failed after 8 s. The build failed. This is the whole log."
        )
        assert app.screen.query_one("#log-box").border_title == "300 lines"
        assert "v1-app.zip · deploy" in text(app, "#logs-title")


async def test_another_users_build_log_is_not_found(panel: Panel) -> None:
    _visitor, _user_id, project = await owner_of(panel)
    deployment = await insert_deployment(panel, project, "v1-app.zip", "failed", log="secret\n")
    from tests.tui.helpers import sign_up

    bob = await sign_up(panel, "bob")
    app = GhstApp(panel, bob)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(LogsScreen("shop", deployment))
        await settle(pilot)
        assert shown(app) == []
        assert text(app, "#logs-status").startswith("This deployment is gone")
    assert [(n.title, n.message) for n in notes] == [
        ("Not found", "You have no project named 'shop'.")
    ]


# Runtime logs -------------------------------------------------------------------------------


class FloodRuntime:
    """A chatty app: `FLOOD` lines as fast as the loop lets them through, then it stays quiet
    (the stream stays open, like a real app's) until the stream is closed."""

    def __init__(self, at_line: int = -1, then: Callable[[], None] | None = None) -> None:
        self.produced = 0
        self.closed = False
        self.tails: list[int] = []
        self.at_line = at_line  # when to call `then`, in the middle of the flood
        self.then = then

    async def stop(self, deployment: Deployment) -> None:
        raise AssertionError("not used here")

    async def start(self, deployment: Deployment) -> None:
        raise AssertionError("not used here")

    def follow_logs(self, deployment: Deployment, tail: int) -> AsyncIterator[str]:
        self.tails.append(tail)

        async def lines() -> AsyncIterator[str]:
            try:
                for number in range(FLOOD):
                    yield f"line {number}\n"
                    self.produced += 1
                    if number == self.at_line and self.then is not None:
                        self.then()
                    if number % 50 == 49:  # chunks of 50 lines, like a socket read
                        await asyncio.sleep(0)
                await asyncio.Event().wait()
            finally:
                self.closed = True

        return lines()

    async def remove_project(self, project: Project) -> None:
        raise AssertionError("not used here")


async def test_a_flood_of_lines_is_drawn_in_few_writes_and_keys_still_work(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    # The user presses f when the app has printed 1000 lines and goes on printing.
    runtime = FloodRuntime(1000, lambda: app.post_message(events.Key("f", "f")))
    panel.deployments.attach_runtime(runtime)
    async with app.run_test(size=SIZE) as pilot:
        screen = LogsScreen("shop")
        handled_at: list[int] = []
        original_pause = screen.action_pause

        def action_pause() -> None:
            handled_at.append(runtime.produced)
            original_pause()

        screen.action_pause = action_pause  # type: ignore[method-assign]
        await app.push_screen(screen)
        view = screen.query_one(ThrottledLog)
        await wait_for(pilot, lambda: view.received == FLOOD and view.pending == 0)
        # The key was handled while the app was still flooding the screen.
        assert len(handled_at) == 1 and 1000 < handled_at[0] < FLOOD
        assert not view.auto_scroll and "f Follow" in key_bar(app)
        assert runtime.tails == [200]
        # 20,000 lines, a bounded number of writes; the view keeps the last 5000.
        assert view.writes <= 100, view.writes
        assert view.line_count == DEFAULT_MAX_LINES
        assert shown(app)[0] == f"line {FLOOD - DEFAULT_MAX_LINES}"
        assert shown(app)[-1] == f"line {FLOOD - 1}"
        assert "#1 v1-app.zip" in text(app, "#logs-title")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, LogsScreen)
        await wait_for(pilot, lambda: runtime.closed)


async def test_runtime_logs_of_a_project_that_is_not_running(panel: Panel) -> None:
    visitor, _user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(LogsScreen("shop"))
        await settle(pilot)
        message = "shop is not running: there are no logs to show."
        assert text(app, "#logs-status") == message
    assert [n.message for n in notes] == [message]


async def test_follow_home_and_end(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    runtime = FloodRuntime()
    panel.deployments.attach_runtime(runtime)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = LogsScreen("shop")
        await app.push_screen(screen)
        view = screen.query_one(ThrottledLog)
        await wait_for(pilot, lambda: view.received == FLOOD and view.pending == 0)
        await pilot.pause()
        assert view.auto_scroll and view.is_vertical_scroll_end
        assert screen.query_one("#log-box").border_title == "following"
        await pilot.press("home")
        await pilot.pause()
        assert not view.auto_scroll and view.scroll_y == 0
        assert screen.query_one("#log-box").border_title == "paused: f to follow"
        await pilot.press("end")
        await pilot.pause()
        assert view.auto_scroll and view.is_vertical_scroll_end
        await pilot.press("f")
        await pilot.pause()
        assert not view.auto_scroll
        await pilot.press("f")
        await pilot.pause()
        assert view.auto_scroll


def test_lines_are_cleaned_of_escapes_and_cut() -> None:
    assert clean_line("\x1b[1;31mred\x1b[0m and \x1b]0;title\x07plain\x00\r") == "red and plain"
    assert clean_line("tab\tkept") == "tab\tkept"
    long = clean_line("x" * 5000)
    assert len(long) == 2000 and long.endswith("…")
