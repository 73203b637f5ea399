"""The plan a project runs on, in the dashboard: the new-project dialog lists the plans offered
with their limits and monthly price (the free one while the account has none), and the project
screen shows the plan's name and the usage bars. Against the real PostgreSQL."""

from __future__ import annotations

from textual.widgets import RadioButton, Static

from core.billing.plans import PlanSpec
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.tui.helpers import SIZE, click, fill, settle, sign_up
from tests.tui.test_billing import zip_of
from tests.tui.test_deployments import upload, wait_for
from tests.tui.test_events import IDLE_SECONDS, Calls
from tui.app import GhstApp
from tui.screens.new_project import NewProjectDialog, plan_label
from tui.screens.project import ProjectScreen
from tui.screens.projects import ProjectsScreen
from tui.widgets.usage_bars import UsageBars


def labels(app: GhstApp) -> dict[str, tuple[str, bool]]:
    """Each plan's line and whether it can be chosen."""
    return {
        str(button.name): (str(button.label), not button.disabled)
        for button in app.screen.query(RadioButton)
    }


async def test_the_dialog_offers_each_plan_with_its_price_and_creates_on_the_chosen_one(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.plans.add_version(SYSTEM, PlanSpec("host-0", "Host-0", 55_000, 1000, 4096, 1024, 5))
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ProjectsScreen())
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NewProjectDialog)
        offered = labels(app)
        assert list(offered) == ["free", "host-0", "host-1", "host-2"]
        # The newest version's price, in the installation's currency.
        assert offered["host-0"] == (
            "Host-0      1 CPU   4 GB RAM   1 GB disk  5 svc   550.00 RUB/mo",
            True,
        )
        assert offered["free"][0].endswith(" free") and offered["free"][1]
        assert app.screen.query_one("#plan-free", RadioButton).value  # chosen while offered
        await fill(pilot, name="first")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)

        # A second project: the free plan is taken, and the dialog says why.
        await pilot.press("n")
        await settle(pilot)
        offered = labels(app)
        assert offered["free"][1] is False
        assert "one free project, and yours has it" in str(
            app.screen.query_one("#plan-note", Static).render()
        )
        assert app.screen.query_one("#plan-host-0", RadioButton).value  # cheapest paid
        await click(pilot, "#plan-host-1")
        await click(pilot, "#name")
        await pilot.press(*"second", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ProjectsScreen)
    alice = acting(visitor.user.id)
    first = await panel.subscriptions.plan_of(alice, "first")
    second = await panel.subscriptions.plan_of(alice, "second")
    assert first is not None and first.plan.code == "free"
    assert second is not None and second.plan.code == "host-1"


async def test_the_project_screen_shows_the_plan_and_its_usage(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.subscriptions.create_project(acting(visitor.user.id), "shop")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await settle(pilot)
        bars = app.screen.query_one("#usage-bars", UsageBars)
        await pilot.pause()
        shown = str(bars.render())
        assert shown.startswith("Free")
        # 200 columns: bars, and the numbers in full.
        assert "░" in shown and "0.00 / 0.25 CPU" in shown
        assert "0.0 / 256.0 MiB" in shown and "0 / 2 services" in shown


async def test_the_project_screens_usage_is_measured_again_on_events_not_on_a_timer(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.subscriptions.create_project(alice, "shop", "host-0")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await app.push_screen(ProjectScreen("shop"))
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        await settle(pilot)
        bars = app.screen.query_one("#usage-bars", UsageBars)
        assert str(bars.render()).startswith("Host-0")
        measures = Calls(panel.subscriptions, "usage")
        await pilot.pause(IDLE_SECONDS)
        assert measures.count == 0  # idle: nothing measured, nothing queried

        # An upload from another session: its event measures again.
        await upload(panel, visitor.user.id, "shop", zip_of(300 * 1024))
        await wait_for(pilot, lambda: "0.3 / 1024.0 MiB" in str(bars.render()))
        # The plan changed elsewhere (a project event, migration 0018): the new plan's bars.
        await panel.subscriptions.change_plan(alice, "shop", "host-1")
        await wait_for(pilot, lambda: str(bars.render()).startswith("Host-1"))
        assert "/ 2 CPU" in str(bars.render())


def test_a_plan_line_fits_the_dialog() -> None:
    from tests.tui.fakes_billing import PLANS

    for plan in PLANS:
        assert len(plan_label(plan, "RUB")) <= 63
