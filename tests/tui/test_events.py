"""Screens redraw on events, not timers: idle they make no query; a change written elsewhere
(another connection, another process) shows without a keypress."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from core.errors import PanelError
from core.events import REFRESH, Event
from core.panel import Panel
from tests.actors import acting
from tests.tui.fakes import ALICE, SHOP_DEPLOYMENTS, deployment, fake_app, signed_in_visitor
from tests.tui.helpers import SIZE, settle, sign_up
from tests.tui.test_deployments import (
    focus_deployments,
    insert_deployment,
    open_project,
    owner_of,
    rows,
    set_state,
    text,
    upload,
    wait_for,
)
from tui import watch as watch_module
from tui.app import GhstApp
from tui.screens.project import ProjectScreen
from tui.screens.projects import ProjectsScreen
from tui.watch import Changed
from tui.widgets.usage_bars import UsageBars

# Longer than the 1.5 s the screens used to poll at: a timer would have loaded by then.
IDLE_SECONDS = 2.0


class Calls:
    """Counts calls of a service method (each is a query, or several)."""

    def __init__(self, target: Any, name: str) -> None:
        self.count = 0
        original = getattr(target, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        setattr(target, name, counted)


async def test_the_project_screen_redraws_on_an_event_and_idles_without_queries(
    panel: Panel,
) -> None:
    visitor, _user_id, project = await owner_of(panel)
    building = await insert_deployment(
        panel, project, "v1-app.zip", "building", seconds=None, started=datetime.now(UTC)
    )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await settle(pilot)
        loads = Calls(panel.deployments, "list")
        await pilot.pause(IDLE_SECONDS)
        assert loads.count == 0  # a build runs, its duration ticks, and nothing is queried
        assert rows(app, "deployments")[0][3] == "◌ building…"

        # A worker elsewhere: its own connection, not this process's pool.
        conn = await asyncpg.connect(panel.settings.database_url)
        try:
            await conn.execute(
                "UPDATE deployments SET state = 'failed', error = 'The app never answered.',"
                " finished_at = now() WHERE id = $1",
                building,
            )
        finally:
            await conn.close()
        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] == "✗ failed")
        assert text(app, "#status").startswith("✗ failed  ")
        assert loads.count == 1


async def test_the_projects_list_shows_an_upload_from_another_session_on_its_event(
    panel: Panel,
) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await settle(pilot)
        loads = Calls(panel.projects, "list")
        await pilot.pause(IDLE_SECONDS)
        assert loads.count == 0
        assert rows(app, "projects")[0][2] == "0"
        await upload(panel, user_id, "shop")
        await wait_for(pilot, lambda: rows(app, "projects")[0][2] == "1")
        # A build log growing is not the list's business: it is not even woken.
        deployment = await insert_deployment(panel, _project, "v1-app.zip", "building")
        async with panel.pool.acquire() as conn:
            await conn.execute("UPDATE deployments SET log = 'Step 1' WHERE id = $1", deployment)
        await pilot.pause(0.5)
        assert loads.count == 1


async def test_events_missed_mean_one_load_and_a_covered_screen_waits_for_its_turn() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        deployments = app.panel.deployments
        history = deployments.histories["shop"]  # type: ignore[attr-defined]
        newest = history[0]
        before = rows(app, "deployments")[0][3]
        history[0] = dataclasses.replace(newest, state="cancelled")
        events = app.panel.events

        await app.push_screen(ProjectsScreen())  # the project screen is covered
        await settle(pilot)
        loads = Calls(deployments, "list")
        events.deliver(REFRESH)
        await settle(pilot)
        assert loads.count == 0  # the covered screen loads when it is shown again
        app.pop_screen()
        await settle(pilot)
        assert loads.count == 1
        assert rows(app, "deployments")[0][3] == "⊘ cancelled"

        history[0] = newest
        events.deliver(REFRESH)  # what the hub sends after reconnecting
        await settle(pilot)
        assert loads.count == 2
        assert rows(app, "deployments")[0][3] == before != "⊘ cancelled"


def selected_id(screen: ProjectScreen) -> int | None:
    selected = screen.selected_deployment()
    return selected.id if selected is not None else None


async def test_a_deployment_event_changes_its_row_in_place_and_keeps_the_selection(
    panel: Panel,
) -> None:
    visitor, _user_id, project = await owner_of(panel)
    live = await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    queued = await insert_deployment(panel, project, "v2-app.zip", "queued", seconds=None)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await focus_deployments(pilot, "down")  # the user selects the live one, below
        table = screen.query_one("#deployments", DataTable)
        before = {key.value: row for key, row in table.rows.items()}
        assert selected_id(screen) == live
        uploads = Calls(panel.archives, "list")

        await set_state(panel, queued, "building")
        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] == "◌ building…")
        # The same row objects, the cursor where the user left it; the uploads not reloaded.
        assert all(table.rows[RowKey(key)] is row for key, row in before.items())
        assert table.cursor_row == 1
        assert uploads.count == 0

        # A new deployment comes first in the table; the selection follows the live one.
        newer = await insert_deployment(panel, project, "v3-app.zip", "queued", seconds=None)
        await wait_for(pilot, lambda: len(rows(app, "deployments")) == 3)
        assert [row[0] for row in rows(app, "deployments")] == [
            f"#{newer}",
            f"#{queued}",
            f"#{live}",
        ]
        assert all(table.rows[RowKey(key)] is row for key, row in before.items())
        assert selected_id(screen) == live
        assert uploads.count == 0


async def test_another_users_events_never_reach_the_screen(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    # Another tenant, deploying and uploading.
    bob = await sign_up(panel, "bob")
    assert bob.user is not None
    theirs = await panel.projects.create(acting(bob.user.id), "shop-bob")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await settle(pilot)
        delivered: list[Changed] = []
        post = screen.post_message

        def recorded(message: Any) -> bool:
            if isinstance(message, Changed):
                delivered.append(message)
            return post(message)

        screen.post_message = recorded  # type: ignore[method-assign]
        loads = Calls(panel.deployments, "list")
        building = await insert_deployment(panel, theirs, "bob-app.zip", "building")
        await set_state(panel, building, "failed", "Bob's build failed.")
        await upload(panel, bob.user.id, "shop-bob")
        await pilot.pause(IDLE_SECONDS)
        assert delivered == []
        assert loads.count == 0
        assert [row[1] for row in rows(app, "deployments")] == ["v1-app.zip"]

        # The screen still hears its own project: the recording above can see an event.
        await upload(panel, _user_id, "shop")
        await wait_for(pilot, lambda: bool(delivered))
        assert {event.project_id for message in delivered for event in message.events} == {
            project.id
        }


async def test_a_running_builds_duration_ticks_in_its_row_and_the_status_line(
    panel: Panel,
) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    await insert_deployment(
        panel, project, "v2-app.zip", "building", seconds=None, started=datetime.now(UTC)
    )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        table = screen.query_one("#deployments", DataTable)
        rows_before = dict(table.rows)
        took, live_took = rows(app, "deployments")[0][5], rows(app, "deployments")[1][5]
        status = text(app, "#status")
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5] != took)
        await wait_for(pilot, lambda: text(app, "#status") != status)
        assert rows(app, "deployments")[1][5] == live_took  # a finished one does not tick
        assert all(table.rows[key] is row for key, row in rows_before.items())


async def test_a_burst_of_events_makes_one_load_that_shows_the_last_state() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        delivered: list[Changed] = []
        post = screen.post_message

        def recorded(message: Any) -> bool:
            if isinstance(message, Changed):
                delivered.append(message)
            return post(message)

        screen.post_message = recorded  # type: ignore[method-assign]
        deployments = app.panel.deployments
        history = deployments.histories["shop"]  # type: ignore[attr-defined]
        loads, uploads = Calls(deployments, "list"), Calls(app.panel.archives, "list")
        newest = history[0]
        # Queued, claimed, failed: the worker's three commits, milliseconds apart.
        for state in ("queued", "building", "failed"):
            history[0] = dataclasses.replace(newest, state=state)
            app.panel.events.deliver(Event("deployment", 1, ALICE.id, newest.id))
        history[0] = dataclasses.replace(newest, state="cancelled")

        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] == "⊘ cancelled")
        await settle(pilot)
        assert [len(message.events) for message in delivered] == [3]
        assert loads.count == 1
        assert uploads.count == 0  # deployment events leave the uploads as they were

        # Events further apart than a burst are each loaded.
        history[0] = newest
        app.panel.events.deliver(Event("deployment", 1, ALICE.id, newest.id))
        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] != "⊘ cancelled")
        assert loads.count == 2


async def test_the_uploads_table_changes_in_place_and_keeps_the_selection(panel: Panel) -> None:
    visitor, user_id, project = await owner_of(panel)
    first = await upload(panel, user_id, "shop")
    second = await upload(panel, user_id, "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        table = screen.query_one("#history", DataTable)
        table.focus()
        await pilot.press("down")  # the user selects the older version
        await settle(pilot)
        assert screen.selected_archive() is not None
        assert screen.selected_archive().id == first.id  # type: ignore[union-attr]
        before = {key.value: row for key, row in table.rows.items()}

        newest = await upload(panel, user_id, "shop")
        await wait_for(pilot, lambda: len(rows(app, "history")) == 3)
        # The new version first; the same row objects; the selection on the same version.
        assert [row[0] for row in rows(app, "history")] == [
            newest.name,
            second.name,
            first.name,
        ]
        assert all(table.rows[RowKey(key)] is row for key, row in before.items())
        assert screen.selected_archive().id == first.id  # type: ignore[union-attr]
        assert table.cursor_row == 2

        # Another version deleted (in another session): its row goes, the selection stays.
        await panel.archives.delete(acting(user_id), project.name, second.name)
        await wait_for(pilot, lambda: len(rows(app, "history")) == 2)
        assert [row[0] for row in rows(app, "history")] == [newest.name, first.name]
        assert screen.selected_archive().id == first.id  # type: ignore[union-attr]
        assert table.rows[RowKey(str(first.id))] is before[str(first.id)]


async def test_the_screens_of_one_project_measure_its_usage_once_for_an_event() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        bars = screen.query_one("#usage-bars", UsageBars)
        shown = bars.content
        measures = Calls(app.panel.subscriptions, "usage")
        # Other sessions' screens of the same project, woken by the same event, in this process.
        others = [ProjectScreen("shop") for _ in range(3)]
        usages = await asyncio.gather(*(s.measure_usage() for s in [screen, *others]))
        assert measures.count == 1
        assert all(usage == usages[0] for usage in usages)

        # A later event measures again; the same numbers leave the bars as they were drawn.
        app.panel.events.deliver(Event("project", 1, ALICE.id))
        await wait_for(pilot, lambda: measures.count == 2)
        await settle(pilot)
        assert bars.content is shown

        # Different numbers are drawn.
        subscriptions = app.panel.subscriptions
        more = dataclasses.replace(
            usages[0], services=dataclasses.replace(usages[0].services, used=2)
        )
        subscriptions.usages["shop"] = more  # type: ignore[attr-defined]
        app.panel.events.deliver(Event("project", 1, ALICE.id))
        await wait_for(pilot, lambda: bars.usage == more)
        await settle(pilot)
        assert bars.content is not shown
        assert more.services.text(compact=True) in bars.content.plain


async def test_an_audit_entry_wakes_no_project_screen() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        delivered: list[Changed] = []
        post = screen.post_message

        def recorded(message: Any) -> bool:
            if isinstance(message, Changed):
                delivered.append(message)
            return post(message)

        screen.post_message = recorded  # type: ignore[method-assign]
        loads = Calls(app.panel.deployments, "list")
        # The user's own action on this very project: its audit entry is not the screen's.
        app.panel.events.deliver(Event("audit", 1, ALICE.id))
        app.panel.events.deliver(Event("log", 1, ALICE.id, 5))
        await pilot.pause(0.2)
        await settle(pilot)
        assert delivered == []
        assert loads.count == 0


async def test_a_running_build_does_not_tick_during_a_load_that_redraws_it() -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    building = deployment(9, "v9-app.zip", "building", started)
    app = fake_app(signed_in_visitor(ALICE), deployments={"shop": [building, *SHOP_DEPLOYMENTS]})
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        deployments = app.panel.deployments
        list_deployments, release = deployments.list, asyncio.Event()

        async def held(*args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await list_deployments(*args, **kwargs)

        deployments.list = held  # type: ignore[method-assign]
        drawn: list[object] = []
        show_status = screen.show_status

        def counted(status: Any) -> None:
            drawn.append(status)
            show_status(status)

        screen.show_status = counted  # type: ignore[method-assign]
        history = deployments.histories["shop"]  # type: ignore[attr-defined]
        history[0] = dataclasses.replace(building, started_at=started - timedelta(minutes=1))
        app.panel.events.deliver(Event("deployment", 1, ALICE.id, 9))
        await wait_for(pilot, lambda: screen.load_running)
        await pilot.pause(IDLE_SECONDS)  # the build's duration would have ticked twice
        assert drawn == []

        release.set()
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5].startswith("1 min"))
        await wait_for(pilot, lambda: len(drawn) >= 2)  # the load's redraw, then the ticks again


async def test_a_running_build_does_not_tick_while_an_event_waits_for_the_screen() -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    building = deployment(9, "v9-app.zip", "building", started)
    app = fake_app(signed_in_visitor(ALICE), deployments={"shop": [building, *SHOP_DEPLOYMENTS]})
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        held: list[Changed] = []
        post = screen.post_message

        def hold(message: Any) -> bool:
            if isinstance(message, Changed):  # as if the process were busy with other screens
                held.append(message)
                return True
            return post(message)

        screen.post_message = hold  # type: ignore[method-assign]
        took = rows(app, "deployments")[0][5]
        history = app.panel.deployments.histories["shop"]  # type: ignore[attr-defined]
        history[0] = dataclasses.replace(building, started_at=started - timedelta(minutes=1))
        app.panel.events.deliver(Event("deployment", 1, ALICE.id, 9))
        await wait_for(pilot, lambda: len(held) == 1)
        await pilot.pause(IDLE_SECONDS)  # the build's duration would have ticked twice
        assert rows(app, "deployments")[0][5] == took

        screen.post_message = post  # type: ignore[method-assign]
        post(held[0])
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5].startswith("1 min"))
        took = rows(app, "deployments")[0][5]
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5] != took)  # ticking again


async def test_no_screen_ticks_while_another_screen_of_the_process_has_an_event_to_draw() -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    building = deployment(9, "v9-app.zip", "building", started)
    app = fake_app(signed_in_visitor(ALICE), deployments={"shop": [building, *SHOP_DEPLOYMENTS]})
    async with app.run_test(size=SIZE) as pilot:
        # Below: a screen the process has not drawn an event on yet (as if busy with others).
        waiting = ProjectScreen("shop")
        await app.push_screen(waiting)
        await settle(pilot)
        held: list[Changed] = []
        post = waiting.post_message

        def hold(message: Any) -> bool:
            if isinstance(message, Changed):
                held.append(message)
                return True
            return post(message)

        waiting.post_message = hold  # type: ignore[method-assign]
        shown = ProjectScreen("shop")
        await app.push_screen(shown)
        await settle(pilot)
        took = rows(app, "deployments")[0][5]
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5] != took)  # it ticks

        history = app.panel.deployments.histories["shop"]  # type: ignore[attr-defined]
        history[0] = dataclasses.replace(building, started_at=started - timedelta(minutes=1))
        app.panel.events.deliver(Event("deployment", 1, ALICE.id, 9))
        await wait_for(pilot, lambda: len(held) == 1)
        # The shown screen draws the event itself...
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5].startswith("1 min"))
        took = rows(app, "deployments")[0][5]
        await pilot.pause(IDLE_SECONDS)  # ...but does not tick while the other waits
        assert rows(app, "deployments")[0][5] == took

        post(held[0])  # the other takes it (covered: it loads when shown again)
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5] != took)  # ticking again


async def test_a_screen_that_never_draws_its_event_stops_holding_the_ticks(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(watch_module, "HOLD_TICKS_SECONDS", 0.5)
    started = datetime.now(UTC) - timedelta(seconds=5)
    building = deployment(9, "v9-app.zip", "building", started)
    app = fake_app(signed_in_visitor(ALICE), deployments={"shop": [building, *SHOP_DEPLOYMENTS]})
    async with app.run_test(size=SIZE) as pilot:
        stuck = ProjectScreen("shop")
        await app.push_screen(stuck)
        await settle(pilot)
        post = stuck.post_message

        def drop(message: Any) -> bool:
            return True if isinstance(message, Changed) else post(message)

        stuck.post_message = drop  # type: ignore[method-assign]
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        app.panel.events.deliver(Event("deployment", 1, ALICE.id, 9))
        await pilot.pause(0.1)
        took = rows(app, "deployments")[0][5]
        await wait_for(pilot, lambda: rows(app, "deployments")[0][5] != took)


async def test_a_usage_measure_that_fails_the_same_way_again_is_not_drawn_again() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen("shop")
        await app.push_screen(screen)
        await settle(pilot)
        bars = screen.query_one("#usage-bars", UsageBars)

        async def failing(*args: Any) -> Any:
            raise PanelError("docker did not answer.")

        app.panel.subscriptions.usage = failing  # type: ignore[method-assign]
        app.panel.events.deliver(Event("project", 1, ALICE.id))
        await wait_for(pilot, lambda: "docker did not answer" in str(bars.content))
        await settle(pilot)
        shown, measured = bars.content, bars.measured
        # Each event that finishes a deployment measures again: the same message stays drawn.
        app.panel.events.deliver(Event("project", 1, ALICE.id))
        await wait_for(pilot, lambda: bars.measured > measured)
        await settle(pilot)
        assert bars.content is shown
        assert "docker did not answer" in str(bars.content)
