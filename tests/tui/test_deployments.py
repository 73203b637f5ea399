"""The project screen's deployments against the real PostgreSQL, Redis and DeploymentService.

Deployments that need no real build are inserted as rows (what a worker would have left);
queueing (deploy, redeploy, restart, rollback, cancel) goes through the real service. Stop and
start reach Docker through the service's runtime: those tests attach a runtime that records
the calls, so the service's own checks and the project's stopped flag stay real.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from core.archives.checks import ArchiveRejected
from core.archives.service import Archive
from core.deploy.operations import Operations
from core.deploy.service import Deployment
from core.deploy.store import DeploymentStore
from core.deploy.worker import DeploymentWorker
from core.panel import Panel
from core.projects.service import Project
from tests.actors import acting, as_user
from tests.tui.helpers import SIZE, Note, record_notifications, settle, sign_up
from tui.app import GhstApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.env import EnvScreen
from tui.screens.logs import LogsScreen
from tui.screens.project import ProjectScreen
from tui.visitor import Visitor
from tui.widgets.keybar import KeyBar

STARTED = datetime(2025, 2, 3, 9, 14, tzinfo=UTC)


# Helpers (also used by test_logs.py) ---------------------------------------------------------


def app_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Dockerfile", "FROM scratch\n")
        archive.writestr("index.html", "hi")
    return buffer.getvalue()


async def upload(panel: Panel, user_id: int, project: str, data: bytes | None = None) -> Archive:
    transfer = await panel.archives.begin_upload(acting(user_id), project, "app.zip")
    await transfer.write(data if data is not None else app_zip())
    return await transfer.finish()


async def owner_of(panel: Panel, project: str = "shop") -> tuple[Visitor, int, Project]:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    created = await panel.projects.create(acting(visitor.user.id), project)
    return visitor, visitor.user.id, created


async def insert_deployment(
    panel: Panel,
    project: Project,
    archive_name: str,
    state: str,
    *,
    seconds: int | None = 20,
    error: str = "",
    image: bool = True,
    live: bool = False,
    archive_id: int | None = None,
    log: str = "",
    started: datetime = STARTED,
) -> int:
    """A deployment row as a worker leaves it; `live` makes it the one nginx routes to."""
    finished = started + timedelta(seconds=seconds) if seconds is not None else None
    async with panel.pool.acquire() as conn:
        deployment_id: int = await conn.fetchval(
            "INSERT INTO deployments (project_id, user_id, archive_id, archive_name, state,"
            " error, image, kind, port, app_port, log, started_at, finished_at, project_name)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'dockerfile', $8, 8080, $9, $10, $11, $12)"
            " RETURNING id",
            project.id,
            project.user_id,
            archive_id,
            archive_name,
            state,
            error,
            f"ghst/{project.name}:test" if image else None,
            20999 if live else None,
            log,
            started,
            finished,
            project.name,
        )
        if live:
            await conn.execute(
                "UPDATE projects SET live_deployment_id = $1 WHERE id = $2",
                deployment_id,
                project.id,
            )
    return deployment_id


async def set_state(panel: Panel, deployment_id: int, state: str, error: str = "") -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE deployments SET state = $2, error = $3,"
            " finished_at = CASE WHEN $2 IN ('queued', 'building', 'starting') THEN NULL"
            " ELSE now() END WHERE id = $1",
            deployment_id,
            state,
            error,
        )


def rows(app: GhstApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(cell) for cell in table.get_row_at(row)] for row in range(table.row_count)]


def text(app: GhstApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def key_bar(app: GhstApp) -> str:
    return str(app.screen.query_one(KeyBar).render())


def titles(notes: list[Note]) -> list[str]:
    return [note.title for note in notes]


async def wait_for(pilot: Pilot[Any], condition: Any, seconds: float = 5) -> None:
    """Let the app run until `condition()` holds (the polls do the work), at most `seconds`."""
    started = time.monotonic()
    while not condition() and time.monotonic() - started < seconds:
        await pilot.pause(0.05)
    assert condition()


async def open_project(app: GhstApp, pilot: Pilot[Any], name: str = "shop") -> ProjectScreen:
    screen = ProjectScreen(name)
    await app.push_screen(screen)
    await settle(pilot)
    return screen


async def focus_deployments(pilot: Pilot[Any], *moves: str) -> None:
    pilot.app.screen.query_one("#deployments", DataTable).focus()
    await pilot.pause()
    if moves:
        await pilot.press(*moves)
    await pilot.pause()


class RecordingRuntime:
    """Stands in for Docker behind the real DeploymentService: records stop and start."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def stop(self, deployment: Deployment) -> None:
        self.calls.append(("stop", deployment.id))

    async def start(self, deployment: Deployment) -> None:
        self.calls.append(("start", deployment.id))

    def follow_logs(self, deployment: Deployment, tail: int) -> AsyncIterator[str]:
        raise AssertionError("not used here")

    async def remove_project(self, project: Project) -> None:
        self.calls.append(("remove", project.id))


class NoDocker:
    """The worker's deployer, for jobs that need none: no sweeps, no container checks."""

    async def confine_running(self) -> None: ...

    async def sweep(self) -> None: ...

    async def check_live(self) -> None: ...

    async def close(self) -> None: ...


@contextlib.asynccontextmanager
async def running_worker(panel: Panel, runtime: RecordingRuntime) -> AsyncIterator[None]:
    """A deployment worker whose stop, start and delete jobs go to `runtime`."""
    operations = Operations(DeploymentStore(panel.pool), panel.projects, panel.archives, runtime)
    worker = DeploymentWorker(
        panel.pool, panel.settings.database_url, panel.queue, NoDocker(), operations=operations
    )
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


# What the screen shows ---------------------------------------------------------------------


async def test_a_running_project_with_a_failed_attempt(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "superseded")
    live = await insert_deployment(panel, project, "v1-app.zip", "running", seconds=6, live=True)
    failed = await insert_deployment(
        panel, project, "v2-app.zip", "failed", seconds=71, error="The build failed: no FROM."
    )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        status = text(app, "#status")
        assert status.startswith("● running  ")
        assert f"#{live} v1-app.zip, live since 2025-02-03 09:14 UTC; #{failed} failed" in status
        assert text(app, "#url") == "http://shop.localhost:8080/"
        assert rows(app, "deployments") == [
            [f"#{failed}", "v2-app.zip", "deploy", "✗ failed", "2025-02-03 09:14", "1 min 11 s"],
            [f"#{live}", "v1-app.zip", "deploy", "● running", "2025-02-03 09:14", "6 s"],
            ["#1", "v1-app.zip", "deploy", "○ superseded", "2025-02-03 09:14", "20 s"],
        ]
        box = app.screen.query_one("#deployments-box")
        assert box.border_title == "Deployments · 3 · 1 failed"
        await focus_deployments(pilot)  # the newest is selected: its whole error under it
        assert text(app, "#detail") == (
            f"#{failed} v2-app.zip failed: The build failed: no FROM. l shows its build log."
        )
        await pilot.press("down")
        assert text(app, "#detail").startswith(f"#{live} v1-app.zip is live on 127.0.0.1:20999")
        bar = key_bar(app)
        for shown in ("d Deploy", "R Redeploy", "r Restart", "s Stop", "l Build log", "g App logs"):
            assert shown in bar
        assert "Roll back" not in bar and "Cancel" not in bar  # not for the live one


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], "○ new  Not deployed yet: press d to deploy the newest version."),
        ([("failed", False)], "✗ failed  #1 v1-app.zip failed, and no earlier version is live."),
        ([("running", True), ("building", False)], "◌ deploying  #2 v1-app.zip building for "),
        ([("queued", False)], "◌ deploying  #1 v1-app.zip queued, waiting for a builder"),
    ],
)
async def test_the_status_line_says_what_the_project_is_doing(
    panel: Panel, states: list[tuple[str, bool]], expected: str
) -> None:
    visitor, user_id, project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    for state, live in states:
        active = state in ("queued", "building")
        await insert_deployment(
            panel,
            project,
            "v1-app.zip",
            state,
            live=live,
            seconds=None if active else 20,
            started=datetime.now(UTC) if state == "building" else STARTED,
        )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        assert text(app, "#status").startswith(expected)
        if states == [("running", True), ("building", False)]:
            assert text(app, "#status").endswith("; #1 v1-app.zip serves meanwhile")
        if not states:
            assert "No deployments yet. Press d" in text(app, "#no-deployments")
            assert not app.screen.query_one("#deployments", DataTable).display


async def test_a_deployment_moving_on_shows_without_a_keypress(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    building = await insert_deployment(
        panel, project, "v1-app.zip", "building", seconds=None, started=datetime.now(UTC)
    )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        assert rows(app, "deployments")[0][3] == "◌ building…"
        await set_state(panel, building, "failed", "The app never answered.")
        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] == "✗ failed")
        assert text(app, "#status").startswith("✗ failed  ")


async def test_unchanged_polls_do_not_redraw_the_deployments(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    queued = await insert_deployment(panel, project, "v1-app.zip", "queued", seconds=None)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        table = screen.query_one("#deployments", DataTable)
        calls: list[str] = []
        original_clear, original_update = table.clear, table.update_cell

        def clear(*args: Any, **kwargs: Any) -> Any:
            calls.append("clear")
            return original_clear(*args, **kwargs)

        def update_cell(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"update {args[1]}")
            return original_update(*args, **kwargs)

        table.clear = clear  # type: ignore[method-assign]
        table.update_cell = update_cell  # type: ignore[method-assign]
        for _ in range(3):
            screen.poll()
            await settle(pilot)
        assert calls == []
        await set_state(panel, queued, "cancelled", "Cancelled by its owner.")
        screen.poll()
        await settle(pilot)
        # The same rows: only the cells that changed are drawn again.
        assert "clear" not in calls
        assert set(calls) <= {"update state", "update took"} and "update state" in calls
        assert rows(app, "deployments")[0][3] == "⊘ cancelled"


# Acting on deployments ---------------------------------------------------------------------


async def test_d_deploys_the_selected_version_or_the_newest(panel: Panel) -> None:
    visitor, user_id, project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    await upload(panel, user_id, "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        assert app.screen.query_one("#history", DataTable).has_focus
        await pilot.press("down", "d")  # v1-app.zip selected in the uploads
        await settle(pilot)
        assert [row[1:4] for row in rows(app, "deployments")] == [
            ["v1-app.zip", "deploy", "◌ queued"]
        ]
        assert text(app, "#status").startswith("◌ deploying  #1 v1-app.zip queued")
        assert titles(notes) == ["Deployment queued"]
        # With the deployments table focused, d deploys the newest version.
        await focus_deployments(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert [row[1:4] for row in rows(app, "deployments")] == [
            ["v2-app.zip", "deploy", "◌ queued"],
            ["v1-app.zip", "deploy", "○ superseded"],
        ]
        assert app.screen.selected_deployment().id == 2  # type: ignore[attr-defined]
    stored = await panel.deployments.list(as_user(user_id), "shop")
    assert [(d.archive_name, d.state) for d in stored] == [
        ("v2-app.zip", "queued"),
        ("v1-app.zip", "superseded"),
    ]
    assert project.id == stored[0].project_id


async def test_a_refused_upload_is_not_deployed(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    with pytest.raises(ArchiveRejected):
        await upload(panel, user_id, "shop", b"not an archive at all")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await pilot.press("d")  # the refused upload is the newest row, selected
        await settle(pilot)
    assert [(n.title, n.severity) for n in notes] == [("Nothing to deploy", "warning")]
    assert await panel.deployments.list(as_user(user_id), "shop") == []


async def test_d_without_any_version_does_nothing(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        assert "Not deployed yet: upload a version, then press d" in text(app, "#status")
        await pilot.press("d")
        await settle(pilot)
    assert notes == []
    assert await panel.deployments.list(as_user(user_id), "shop") == []


async def test_cancel_a_queued_deployment(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    queued = await panel.deployments.deploy(as_user(user_id), "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot)
        assert "x Cancel" in key_bar(app)
        await pilot.press("x")
        await settle(pilot)
        assert rows(app, "deployments")[0][3] == "⊘ cancelled"
        assert "x Cancel" not in key_bar(app)
        await pilot.press("x")  # finished now: says why instead
        await settle(pilot)
    assert titles(notes) == ["Cancelled", "Nothing to do"]
    assert "has already finished (cancelled)" in notes[1].message
    assert (await panel.deployments.get(as_user(user_id), "shop", queued.id)).state == "cancelled"


async def test_roll_back_to_an_earlier_deployment_after_confirming(panel: Panel) -> None:
    visitor, user_id, project = await owner_of(panel)
    earlier = await insert_deployment(panel, project, "v1-app.zip", "superseded")
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot, "down")
        assert "b Roll back" in key_bar(app)
        assert "b rolls back to it (no build)" in text(app, "#detail")
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == f"Roll back to #{earlier}?"
        await pilot.press("n")
        await settle(pilot)
        assert len(rows(app, "deployments")) == 2
        await pilot.press("b")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        assert rows(app, "deployments")[0][1:4] == [
            "v1-app.zip",
            f"rollback to #{earlier}",
            "◌ queued",
        ]
    assert titles(notes) == ["Rollback queued"]
    newest = (await panel.deployments.list(as_user(user_id), "shop"))[0]
    assert (newest.reason, newest.source_id, newest.state) == ("rollback", earlier, "queued")


@pytest.mark.parametrize(
    ("state", "image", "why"),
    [
        ("failed", False, "never went live (failed)"),
        ("cancelled", False, "never went live (cancelled)"),
        ("superseded", False, "was pruned"),
    ],
)
async def test_roll_back_only_to_what_ran_and_is_kept(
    panel: Panel, state: str, image: bool, why: str
) -> None:
    visitor, user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", state, image=image)
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot, "down")
        assert "Roll back" not in key_bar(app)
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)  # no dialog
    assert titles(notes) == ["Nothing to do"]
    assert why in notes[0].message
    assert len(await panel.deployments.list(as_user(user_id), "shop")) == 2


async def test_redeploy_and_restart_queue_from_the_live_deployment(panel: Panel) -> None:
    visitor, user_id, project = await owner_of(panel)
    archive = await upload(panel, user_id, "shop")
    live = await insert_deployment(
        panel, project, archive.name, "running", live=True, archive_id=archive.id
    )
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await pilot.press("R")
        await settle(pilot)
        assert rows(app, "deployments")[0][1:4] == ["v1-app.zip", "redeploy", "◌ queued"]
        await pilot.press("r")
        await settle(pilot)
        assert rows(app, "deployments")[0][1:4] == ["v1-app.zip", "restart", "◌ queued"]
        assert rows(app, "deployments")[1][3] == "○ superseded"  # the queued redeploy
    assert titles(notes) == ["Redeploy queued", "Restart queued"]
    newest = (await panel.deployments.list(as_user(user_id), "shop"))[0]
    assert (newest.reason, newest.source_id) == ("restart", live)


async def test_keys_that_cannot_act_are_hidden_and_say_why(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        bar = key_bar(app)
        assert "d Deploy" in bar and "e Env vars" in bar and "del Delete" in bar
        for hidden in ("Redeploy", "Restart", "Stop", "Start", "Build log", "App logs"):
            assert hidden not in bar
        await pilot.press("R", "r", "s", "g", "l", "b", "x")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
    assert titles(notes) == ["Nothing to do"] * 7
    assert [n.message.split(":")[0] for n in notes[:3]] == ["shop is not running yet"] * 3
    assert notes[3].message.startswith("shop is not running, so there are no live logs.")
    assert notes[4].message.startswith("shop has no deployments yet")
    assert await panel.deployments.list(as_user(user_id), "shop") == []


async def test_stop_asks_first_and_s_then_starts_it_again(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    live = await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    runtime = RecordingRuntime()
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    # The screen queues the stop and the start; a worker carries them out with `runtime`.
    async with running_worker(panel, runtime), app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == "Stop shop?"
        await pilot.press("n")
        await settle(pilot)
        assert runtime.calls == []
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert runtime.calls == [("stop", live)]
        assert text(app, "#status").startswith("■ stopped  ")
        assert rows(app, "deployments")[0][3] == "■ stopped"
        assert "s Start" in key_bar(app) and "s Stop" not in key_bar(app)
        await pilot.press("s")  # starting asks nothing
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        assert runtime.calls == [("stop", live), ("start", live)]
        assert text(app, "#status").startswith("● running  ")
    assert titles(notes) == ["Stopped", "Started"]


async def test_a_refusal_from_the_service_is_a_notification(panel: Panel) -> None:
    """The deployment finished in another session while this screen still showed it queued."""
    visitor, user_id, _project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    queued = await panel.deployments.deploy(as_user(user_id), "shop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_project(app, pilot)
        assert screen._events is not None
        screen._events.close()  # the screen must not learn of it before the key
        await focus_deployments(pilot)
        await panel.deployments.cancel(as_user(user_id), "shop", queued.id)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
    assert [(n.title, n.severity) for n in notes] == [("Already finished", "error")]
    assert notes[0].message == f"Deployment #{queued.id} has already finished (cancelled)."


async def test_l_g_and_e_open_the_logs_and_env_screens(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    first = await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    second = await insert_deployment(panel, project, "v2-app.zip", "failed")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_project(app, pilot)
        await pilot.press("l")  # the uploads table is not focused: the latest deployment
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        assert app.screen.deployment_id == second
        await pilot.press("escape")
        await focus_deployments(pilot, "down", "l")
        assert isinstance(app.screen, LogsScreen)
        assert app.screen.deployment_id == first
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen)
        assert app.screen.runtime
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert app.screen.project_name == "shop"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)


# The key bar when many keys apply ------------------------------------------------------------


def visible_bar(app: GhstApp) -> str:
    """The key bar's line as drawn on the terminal (cut to its width)."""
    bar = app.screen.query_one(KeyBar)
    return "".join(segment.text for segment in bar.render_line(0)).rstrip()


async def test_every_key_fits_at_100_columns_with_esc_and_quit_last(panel: Panel) -> None:
    """An earlier deployment selected: the most keys the screen ever shows at once."""
    visitor, _user_id, project = await owner_of(panel)
    earlier = await insert_deployment(panel, project, "v1-app.zip", "superseded")
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot, "down")
        assert visible_bar(app) == (
            " d Deploy R Redeploy r Restart s Stop b Roll back l Build log g App logs"
            " e Env vars esc Back ^q Quit"
        )
        # Drawn closer together, the keys are still clickable.
        await pilot.click(KeyBar, offset=(visible_bar(app).index(" b ") + 1, 0))
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == f"Roll back to #{earlier}?"


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (
            80,
            " R Redeploy r Restart s Stop b Roll back l Build log g App logs esc Back ^q Quit",
        ),
        (60, " R Redeploy b Roll back l Build log esc Back ^q Quit"),
        (40, " b Roll back esc Back ^q Quit"),
    ],
)
async def test_a_narrow_key_bar_leaves_out_the_least_important_keys(
    panel: Panel, width: int, expected: str
) -> None:
    """The dimmed Deploy (nothing uploaded) goes first, then env vars, app logs...; the
    selected deployment's action, esc and quit stay; a key left out still works."""
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "superseded")
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(width, 30)) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot, "down")
        assert visible_bar(app) == expected
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)


async def test_the_key_bar_fits_again_when_the_terminal_grows(panel: Panel) -> None:
    visitor, _user_id, project = await owner_of(panel)
    await insert_deployment(panel, project, "v1-app.zip", "superseded")
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(40, 30)) as pilot:
        await open_project(app, pilot)
        await focus_deployments(pilot, "down")
        assert "e Env vars" not in visible_bar(app)
        await pilot.resize_terminal(120, 30)
        await pilot.pause()
        # Room for all: drawn as usual again, two spaces between keys.
        assert visible_bar(app) == (
            " d Deploy  R Redeploy  r Restart  s Stop  b Roll back  l Build log  g App logs"
            "  e Env vars  esc Back  ^q Quit"
        )
