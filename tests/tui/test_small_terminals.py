"""Every screen at 80x24 (and the project screen at 120 columns) against the real services.

These assert what reaches the terminal, not what the widgets hold: a cell can hold "● running"
while its column is one character too narrow to draw it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.widget import Widget
from textual.widgets import Button, DataTable

from core.identity.keys import parse_public_key
from core.panel import Panel
from tests.actors import as_user
from tests.tui.helpers import guest, settle, sign_up
from tests.tui.test_deployments import (
    insert_deployment,
    open_project,
    owner_of,
    rows,
    upload,
    wait_for,
)
from tui.app import GhstApp
from tui.screens.env import EnvScreen
from tui.screens.keys import KeysScreen
from tui.screens.logs import LogsScreen
from tui.screens.password import PasswordScreen
from tui.screens.projects import ProjectsScreen
from tui.widgets.keybar import KeyBar

SMALL = (80, 24)
STARTED = datetime(2026, 12, 3, 7, 45, tzinfo=UTC)


def drawn(widget: Widget) -> list[str]:
    """The lines of `widget` as the terminal shows them (clipped to its size)."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def screen_lines(app: GhstApp) -> list[str]:
    """The whole terminal, dialogs over screens included, one string per row."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def key_bar_line(app: GhstApp) -> str:
    return drawn(app.screen.query_one(KeyBar))[0]


def key_row(app: GhstApp) -> str:
    """The bottom row of the terminal: where the key bar must be."""
    return screen_lines(app)[-1]


async def test_home_at_80x24_shows_the_key_and_session_counts_and_the_key_bar(
    panel: Panel, new_key: Any
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.keys.add(as_user(visitor.user.id), new_key("laptop"), "laptop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        lines = screen_lines(app)
        assert any("SSH keys       1 key" in line for line in lines), lines
        assert any("Sessions       1 active (this one)" in line for line in lines), lines
        assert "…" not in "".join(lines)
        # Every step of "What next" is on screen, not below a scroll (the key bar aside).
        steps = "\n".join(lines[:-1])
        for step in ("j  Projects", "k  Manage SSH keys", "l  Log out", "o  Log out everywhere"):
            assert step in steps, steps
        assert "j Projects" in key_row(app) and "^q Quit" in key_row(app)


async def test_the_uploads_table_shows_its_rows_at_80x24(panel: Panel) -> None:
    visitor, user_id, project = await owner_of(panel)
    for _ in range(3):
        await upload(panel, user_id, "shop")
    await insert_deployment(panel, project, "v1-app.zip", "superseded", started=STARTED)
    await insert_deployment(panel, project, "v2-app.zip", "running", live=True, started=STARTED)
    await insert_deployment(
        panel,
        project,
        "v3-app.zip",
        "failed",
        error="The app did not answer on port 8080 within 60 s. Its last log line: "
        "Error: Cannot find module 'express'.",
        started=STARTED,
    )
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await open_project(app, pilot)
        uploads = "\n".join(drawn(app.screen.query_one("#history", DataTable)))
        for name in ("v1-app.zip", "v2-app.zip", "v3-app.zip"):
            assert name in uploads, uploads
        deployments = "\n".join(drawn(app.screen.query_one("#deployments", DataTable)))
        assert "● running" in deployments and "✗ failed" in deployments, deployments
        assert "^q Quit" in key_row(app)


@pytest.mark.parametrize("width", [80, 120])
async def test_a_deployment_that_goes_live_shows_running_and_its_start_in_full(
    panel: Panel, width: int
) -> None:
    """The row is first drawn queued and not started ("—"), then updated in place."""
    visitor, _user_id, project = await owner_of(panel)
    deployment = await insert_deployment(panel, project, "v1-app.zip", "queued", seconds=None)
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE deployments SET started_at = NULL WHERE id = $1", deployment)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(width, 24)) as pilot:
        await open_project(app, pilot)
        assert rows(app, "deployments")[0][3:5] == ["◌ queued", "—"]
        async with panel.pool.acquire() as conn:
            await conn.execute(
                "UPDATE deployments SET state = 'running', started_at = $2,"
                " finished_at = $2, port = 20999 WHERE id = $1",
                deployment,
                STARTED,
            )
            await conn.execute(
                "UPDATE projects SET live_deployment_id = $1 WHERE id = $2",
                deployment,
                project.id,
            )
        # Back from another screen, the project screen loads again.
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: rows(app, "deployments")[0][3] == "● running")
        await settle(pilot)
        table = app.screen.query_one("#deployments", DataTable)
        row = next(line for line in drawn(table) if f"#{deployment}" in line)
        assert "● running" in row, row
        assert "2026-12-03 07:45" in row, row


@pytest.mark.parametrize("width", [80, 120])
async def test_the_key_bar_keeps_quit_on_every_screen(panel: Panel, width: int) -> None:
    visitor, user_id, project = await owner_of(panel)
    await upload(panel, user_id, "shop")
    await insert_deployment(panel, project, "v1-app.zip", "superseded")
    await insert_deployment(panel, project, "v1-app.zip", "running", live=True)
    failed = await insert_deployment(panel, project, "v2-app.zip", "failed", log="Step 1/1\n")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(width, 24)) as pilot:

        async def shows_quit(where: str) -> None:
            await settle(pilot)
            bar = key_bar_line(app)
            assert "^q Quit" in bar, f"{where}: {bar!r}"
            assert key_row(app).rstrip() == bar.rstrip(), f"{where}: not the bottom row"

        await shows_quit("home")
        for screen in (KeysScreen(), PasswordScreen(), ProjectsScreen()):
            await app.push_screen(screen)
            await shows_quit(type(screen).__name__)
            assert "esc Back" in key_bar_line(app)
            app.pop_screen()
        await open_project(app, pilot)
        await shows_quit("project, uploads focused")
        # The deployments table focused on one that can be rolled back to: the most keys.
        app.screen.query_one("#deployments", DataTable).focus()
        await pilot.press("down", "down")
        await shows_quit("project, deployments focused")
        assert "esc Back" in key_bar_line(app)
        for screen in (EnvScreen("shop"), LogsScreen("shop", failed)):
            await app.push_screen(screen)
            await shows_quit(type(screen).__name__)
            app.pop_screen()


async def test_ssh_keys_at_80x24_show_whole_fingerprints_and_dates(
    panel: Panel, new_key: Any
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    keys = [
        await panel.keys.add(as_user(visitor.user.id), new_key(), name)
        for name in ("alice@laptop", "ci-runner")
    ]
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await app.push_screen(KeysScreen())
        await settle(pilot)
        table = "\n".join(drawn(app.screen.query_one("#keys", DataTable)))
        for key in keys:
            assert key.name in table and key.fingerprint in table, table
        assert table.count(key.created_at.strftime("%Y-%m-%d")) == 2, table
        assert table.count("never used") == 2, table
        assert "^q Quit" in key_row(app)


async def test_the_sign_up_form_fits_80x24_with_its_buttons(panel: Panel, new_key: Any) -> None:
    visitor = guest(presented_key=parse_public_key(new_key("laptop")))
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        for button in app.screen.query(Button):
            assert button.region.bottom <= SMALL[1] - 1, f"{button.label} is below the screen"
        text = "\n".join(screen_lines(app))
        assert "Create account" in text and "Attach key" in text, text
        assert "^q Quit" in key_row(app)


async def test_projects_at_80x24_show_a_40_character_name_and_its_last_upload(
    panel: Panel,
) -> None:
    name = "a-project-name-of-the-longest-length-40c"
    visitor, user_id, _project = await owner_of(panel, name)
    archive = await upload(panel, user_id, name)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        table = "\n".join(drawn(app.screen.query_one("#projects", DataTable)))
        assert name in table, table
        assert archive.created_at.strftime("%Y-%m-%d %H:%M") in table, table
        # The address left out of the table is spelled out above it.
        assert any("http://<name>." in line for line in screen_lines(app))


async def test_a_project_with_a_40_character_name_shows_its_whole_address_at_80x24(
    panel: Panel,
) -> None:
    name = "a-project-name-of-the-longest-length-40c"
    visitor, _user_id, _project = await owner_of(panel, name)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SMALL) as pilot:
        await open_project(app, pilot, name)
        lines = [line.strip() for line in screen_lines(app)]
        assert name in lines, lines
        # The whole address (with the panel's port, if any) on a line of its own.
        url = f"http://{name}.{panel.settings.domain}"
        assert any(line.startswith(url) and line.endswith("/") for line in lines), lines
