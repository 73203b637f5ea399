"""`:users`' detail screen driven by Pilot: Enter (or i) opens a user's projects with their
plan and usage (measured after the rows show), sessions, keys and tokens without a secret;
j opens their projects, esc comes back; against fixed rows and against PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from core.panel import Panel
from tests.actors import acting
from tests.integration.test_view_as import people
from tests.tui.fakes_admin import admin_app
from tests.tui.fakes_tokens import FIXED_SECRET
from tests.tui.helpers import settle
from tui.admin.app import AdminApp
from tui.admin.projects import AdminProjectsScreen
from tui.admin.user_detail import AdminUserDetailScreen
from tui.admin.users import AdminUsersScreen
from tui.widgets.lines_table import LinesTable

SIZE = (160, 50)


def as_text(static: Static) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


def shown(pilot: Pilot[Any], selector: str) -> str:
    return as_text(pilot.app.screen.query_one(selector, Static))


def screen_text(pilot: Pilot[Any]) -> str:
    return "\n".join(as_text(static) for static in pilot.app.screen.query(Static))


async def test_enter_opens_a_users_details_and_j_their_projects() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("end", "enter")  # dave
        await settle(pilot)
        assert isinstance(app.screen, AdminUserDetailScreen)
        summary = shown(pilot, "#summary")
        assert "dave" in summary and "999.90 RUB" in summary
        projects = shown(pilot, "#projects")
        assert "docs" in projects and "stopped" in projects and "host-1 v1" in projects
        assert "0.03/0.25 CPU · 200/256 MiB · 60/256 MiB · 1/2 services" in projects
        assert "203.0.113.7" in shown(pilot, "#sessions")
        assert "alice@laptop" in shown(pilot, "#keys")
        tokens = shown(pilot, "#tokens")
        assert "ghst_GIT002" in tokens and "deploy logs read" in tokens and "shop" in tokens
        assert FIXED_SECRET not in screen_text(pilot)

        await pilot.press("j")
        await settle(pilot)
        assert isinstance(app.screen, AdminProjectsScreen)
        assert list(app.screen.query_one("#rows", LinesTable).keys) == ["docs"]
        await pilot.press("escape", "escape")  # clears the user: filter, then back
        await settle(pilot)
        assert isinstance(app.screen, AdminUserDetailScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)


async def test_i_opens_the_details_too() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "i")
        await settle(pilot)
        assert isinstance(app.screen, AdminUserDetailScreen)
        assert app.screen.username == "bob"


async def test_the_details_of_a_real_account(panel: Panel) -> None:
    _, _, bob = await people(panel)
    created = await panel.access_tokens.create(acting(bob), "deployer", ["deploy"])
    app = AdminApp(panel)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"bob", "enter")
        await settle(pilot)
        row = app.screen.query_one("#rows", LinesTable)
        assert list(row.keys) == ["bob"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AdminUserDetailScreen)
        assert "shop" in shown(pilot, "#projects") and "free v1" in shown(pilot, "#projects")
        assert "10.0.0.9" in shown(pilot, "#sessions")
        assert app.screen.query_one("#tokens", Static).border_title == "Access tokens (2)"
        assert created.token.prefix in shown(pilot, "#tokens")
        assert created.secret not in screen_text(pilot)
