"""View as user, driven by Pilot against the real services: `v` on a row of `:users` opens
that user's own dashboard under a read-only banner, a write key is refused with core's
message and PostgreSQL is left as it was, esc comes back to the admin's screens; locally
(`ghst admin`) and over SSH (an admin's `:`), and an operator cannot start one."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from core.actor import Actor
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.integration.test_actor_rights import upload
from tests.integration.test_view_as import database_state
from tests.tui.helpers import REMOTE_ADDR, record_notifications, settle
from tests.tui.test_deployments import rows
from tui.admin.app import AdminApp
from tui.admin.users import AdminUsersScreen
from tui.app import GhstApp
from tui.screens.home import HomeScreen
from tui.screens.project import ProjectScreen
from tui.screens.projects import ProjectsScreen
from tui.visitor import Visitor
from tui.widgets.lines_table import LinesTable

SIZE = (120, 30)
BANNER = "VIEWING AS bob · READ-ONLY"


async def bob_with_a_project(panel: Panel) -> None:
    bob = await panel.accounts.sign_up("bob", "bob@example.org", "correct horse battery")
    await panel.subscriptions.create_project(acting(bob), "shop")
    await upload(panel, acting(bob), "shop")


def banner(pilot: Pilot[Any]) -> str:
    found = pilot.app.screen.query("#viewing")
    return str(found.first(Static).render()) if found else ""


def who(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#who", Static).render())


async def view_bob(pilot: Pilot[Any]) -> None:
    """On `:users`: filter to bob, then `v`."""
    await settle(pilot)
    assert isinstance(pilot.app.screen, AdminUsersScreen)
    await pilot.press("slash", *"bob", "enter")
    await settle(pilot)
    assert list(pilot.app.screen.query_one("#rows", LinesTable).keys) == ["bob"]
    await pilot.press("v")
    await settle(pilot)


async def test_ghst_admin_views_a_users_dashboard_read_only(panel: Panel) -> None:
    await bob_with_a_project(panel)
    app = AdminApp(panel)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await view_bob(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert banner(pilot) == BANNER
        assert who(pilot) == "● bob"
        await pilot.press("j")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
        assert banner(pilot) == BANNER
        assert [row[0] for row in rows(app, "projects")] == ["shop"]

        before = await database_state(panel)
        await pilot.press("enter")  # bob's project
        await settle(pilot)
        assert isinstance(app.screen, ProjectScreen)
        assert banner(pilot) == BANNER
        await pilot.press("d")  # deploy: a write
        await settle(pilot)
        assert notes[-1].message == "Viewing as bob: read-only."
        assert notes[-1].severity == "error"
        assert await database_state(panel) == before

        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("escape")  # the viewed home: back to the admin app
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)
        assert app.visitor.viewing is None
        assert app.visitor.staff_actor.kind == "system"


async def test_an_admin_over_ssh_views_and_q_comes_back(panel: Panel) -> None:
    await bob_with_a_project(panel)
    await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    alice = await panel.accounts.set_role(SYSTEM, "alice", "admin")  # ends her logins
    session = await panel.sessions.open(alice.id, "password", REMOTE_ADDR)
    visitor = Visitor(REMOTE_ADDR, "alice", user=alice, session=session)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await view_bob(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert banner(pilot) == BANNER
        # The admin's own login is not the viewed user's to end: log out is refused.
        notes = record_notifications(app)
        await pilot.press("l")
        await settle(pilot)
        assert notes[-1].message == "Viewing as bob: read-only."
        assert visitor.session is not None
        assert await panel.sessions.ended([visitor.session.jti]) == set()
        assert app.is_running

        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)
        await pilot.press("escape", "escape")  # clears the filter, then the admin's dashboard
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert banner(pilot) == ""
        assert who(pilot) == "● alice"


async def test_an_operator_cannot_view_as_a_user(panel: Panel) -> None:
    await bob_with_a_project(panel)
    olga = await panel.accounts.sign_up("olga", "olga@example.com", "correct horse battery")
    olga = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    app = AdminApp(panel, operator=Actor.for_staff(olga))
    async with app.run_test(size=SIZE) as pilot:
        await view_bob(pilot)  # the key is dimmed: nothing opens
        assert isinstance(app.screen, AdminUsersScreen)
        assert app.visitor.viewing is None
    async with panel.pool.acquire() as conn:
        started = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'admin.view_as'"
        )
    assert started == 0
