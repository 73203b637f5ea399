"""The audit screen against the real PostgreSQL: reached from home, the user's own entries
newest first, pages back in time, and new entries shown as they are written elsewhere."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from core.panel import Panel
from tests.tui.helpers import SIZE, settle, sign_up
from tests.tui.test_deployments import wait_for
from tui.app import GhstApp
from tui.screens.audit import PAGE, AuditScreen
from tui.screens.home import HomeScreen
from tui.visitor import Visitor


def shown(app: GhstApp) -> list[str]:
    """Each row's action and target, as the (wide) table shows them."""
    table = app.screen.query_one("#audit", DataTable)
    return [
        f"{table.get_row_at(row)[1]} {table.get_row_at(row)[2]}" for row in range(table.row_count)
    ]


async def test_the_audit_screen_lists_own_entries_and_updates_live(panel: Panel) -> None:
    visitor = await sign_up(panel)
    bob = await sign_up(panel, "bob")
    await panel.projects.create(visitor.actor, "shop")
    await panel.projects.create(bob.actor, "bobs")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)
        assert shown(app) == ["project.create shop", "login alice"]
        # Written by another session: shown without a keypress.
        await panel.env.set(visitor.actor, "shop", "API_KEY", "hidden-value")
        await wait_for(pilot, lambda: len(shown(app)) == 3)
        assert shown(app)[0] == "env.set shop API_KEY"
        assert "hidden-value" not in " ".join(shown(app))
        assert not any("bobs" in row for row in shown(app))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


async def test_pages_go_back_and_forth(panel: Panel) -> None:
    visitor = await sign_up(panel)
    for number in range(PAGE + 5):
        await panel.projects.create(visitor.actor, f"proj-{number}")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(AuditScreen())
        await settle(pilot)
        first = shown(app)
        assert len(first) == PAGE and first[0] == f"project.create proj-{PAGE + 4}"
        await pilot.press("n")
        await settle(pilot)
        # The rest: the five oldest projects and the login.
        assert shown(app) == [f"project.create proj-{n}" for n in range(4, -1, -1)] + [
            "login alice"
        ]
        await pilot.press("n")  # no older page: nothing happens
        await settle(pilot)
        assert len(shown(app)) == 6
        await pilot.press("p")
        await settle(pilot)
        assert shown(app) == first


async def test_nothing_recorded_yet_says_so(panel: Panel) -> None:
    user = await panel.accounts.sign_up("carol", "carol@example.com", "correct horse battery")
    app = GhstApp(panel, Visitor("192.0.2.5", "carol", user=user))
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(AuditScreen())
        await settle(pilot)
        assert "Nothing recorded yet." in str(app.screen.query_one("#empty", Static).render())
