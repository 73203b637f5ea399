"""`:projects` suspends and resumes (an admin's hold, shown in the State column) and opens a
project's last build log and live logs, driven by Pilot: over the fixed rows of
tests/tui/fakes_admin.py, and once against the real PostgreSQL, as an operator reading another
account's build log."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from textual.pilot import Pilot
from textual.widgets import Input, Static

from core.actor import Actor
from core.panel import Panel
from core.services import Services
from tests.actors import SYSTEM, acting
from tests.tui.fakes import SHOP_APP_LOG, SHOP_BUILD_LOG
from tests.tui.fakes_admin import FakeAdmin, admin_app
from tests.tui.helpers import record_notifications, settle
from tests.tui.test_admin import OLGA, SIZE, keys_of
from tests.tui.test_deployments import insert_deployment, wait_for
from tests.tui.test_logs import shown
from tui.admin.app import AdminApp
from tui.admin.projects import AdminProjectsScreen
from tui.screens.billing import InvoiceView
from tui.screens.logs import LogsScreen
from tui.widgets.lines_table import LinesTable

PASSWORD = "correct horse battery"


def row_text(pilot: Pilot[Any], key: str) -> str:
    """The row of `key` as drawn (line 0 holds the titles)."""
    table = pilot.app.screen.query_one("#rows", LinesTable)
    strip = table.render_line(1 + table.keys.index(key))
    return "".join(segment.text for segment in strip)


async def open_projects(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("colon", *"projects", "enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AdminProjectsScreen)


async def test_marked_projects_are_suspended_with_a_reason_then_resumed() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_projects(pilot)
        await pilot.press("space", "space")  # blog and docs (a mark moves down)
        await pilot.press("S")
        await settle(pilot)
        app.screen.query_one("#value-0", Input).value = "phishing pages"
        await pilot.press("enter")
        await settle(pilot)
        assert admin.done == [
            ("suspend", "blog", "phishing pages"),
            ("suspend", "docs", "phishing pages"),
        ]
        assert "suspended (admin)" in row_text(pilot, "blog")
        assert "suspended (admin)" in row_text(pilot, "docs")
        assert "suspended" not in row_text(pilot, "shop")

        await pilot.press("up", "R")  # the marks were cleared: the row under the cursor
        await settle(pilot)
        assert admin.done[-1] == ("resume", "docs", "")
        assert "suspended" not in row_text(pilot, "docs")
        assert "suspended (admin)" in row_text(pilot, "blog")


async def test_escape_in_the_suspend_dialog_suspends_nothing() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_projects(pilot)
        await pilot.press("S")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert admin.done == []
        assert isinstance(app.screen, AdminProjectsScreen)


async def test_an_operator_cannot_suspend_or_resume_but_reads_the_logs() -> None:
    admin = FakeAdmin()
    app = admin_app(admin, operator=Actor.for_staff(OLGA))
    async with app.run_test(size=SIZE) as pilot:
        await open_projects(pilot)
        await pilot.press("S")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert admin.done == []
        assert isinstance(app.screen, AdminProjectsScreen)  # no dialog opened

        await pilot.press("down", "down", "b")  # shop's last deployment, #7
        await wait_for(pilot, lambda: len(shown(app)) >= 10)
        assert isinstance(app.screen, LogsScreen)
        assert shown(app) == SHOP_BUILD_LOG.rstrip("\n").split("\n")
        await pilot.press("escape")
        await settle(pilot)
        assert keys_of(pilot) == ["blog", "docs", "shop", "wiki"]

        await pilot.press("l")
        await wait_for(pilot, lambda: shown(app) == SHOP_APP_LOG)
        await wait_for(pilot, lambda: cast(LogsScreen, app.screen).finished)
        ended = str(app.screen.query_one("#logs-status", Static).render())
        assert "then l to follow the app running now" in ended  # :projects' key, not g
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, AdminProjectsScreen)


async def test_a_project_never_deployed_has_no_build_log_to_open() -> None:
    admin = FakeAdmin()
    admin.project_rows = [
        replace(row, last_deployment_id=None) if row.name == "blog" else row
        for row in admin.project_rows
    ]
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await open_projects(pilot)
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, AdminProjectsScreen)
        assert notes[-1].message == "blog has never been deployed."


async def test_an_operator_reads_another_accounts_build_log_from_the_database(
    panel: Panel,
) -> None:
    await panel.accounts.sign_up("olga", "olga@example.com", PASSWORD)
    olga = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    bob = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    project = await panel.projects.create(acting(bob), "shop")
    lines = ["Step 1/2 : FROM scratch", "Step 2/2 : COPY . /srv", "Error: no CMD"]
    await insert_deployment(
        panel, project, "v1-app.zip", "failed", seconds=3, log="\n".join(lines) + "\n",
        started=datetime.now(UTC),
    )  # fmt: skip
    app = AdminApp(cast(Services, panel), operator=Actor.for_staff(olga))
    async with app.run_test(size=SIZE) as pilot:
        await open_projects(pilot)
        assert keys_of(pilot) == ["shop"]
        await pilot.press("b")
        await wait_for(pilot, lambda: shown(app) == lines)
        await wait_for(pilot, lambda: cast(LogsScreen, app.screen).finished)
        # The live logs of a project that never ran: the service's own message.
        await pilot.press("escape", "l")
        await wait_for(pilot, lambda: cast(LogsScreen, app.screen).finished)
        assert shown(app) == []


# :billing's revenue and invoices ------------------------------------------------------------


async def test_billing_opens_the_revenue_per_month_and_the_invoices() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"billing", "enter")
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert keys_of(pilot)[:3] == ["2025-03", "2025-02", "2025-01"]
        assert len(keys_of(pilot)) == 12
        assert "1 180 000.00" not in row_text(pilot, "2025-02")  # kopecks shown as money
        assert "11 800.00" in row_text(pilot, "2025-02")
        assert "15 000.00" in row_text(pilot, "2025-02")
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        assert keys_of(pilot) == ["4", "3", "2", "1"]
        await pilot.press("slash", "b", "o", "enter")
        await settle(pilot)
        assert keys_of(pilot) == ["3", "1"]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InvoiceView))
        text = str(app.screen.query_one("#invoice-text", Static).render())
        assert "Invoice No. 1" in text and "Account:   bob" in text and "bob-site" in text
        await pilot.press("escape")
        await settle(pilot)
        assert keys_of(pilot) == ["3", "1"]
