"""Billing in the dashboard against the real PostgreSQL: the balance and its warning on home,
the billing screen's plans, usage bars (measured after it shows, again on events), ledger,
invoices and top-up instructions, a plan change previewed, confirmed and made (or refused with
the core's message), and a promised payment explained, taken, or refused with the reason."""

from __future__ import annotations

import asyncio
import io
import os
import zipfile
from datetime import date

from textual.widgets import DataTable, Static

from core.actor import Actor
from core.billing import invoices
from core.billing.charges import charge_day
from core.billing.money import format_amount
from core.billing.proration import daily_share
from core.billing.subscriptions import ONE_FREE
from core.billing.usage import ProjectUsage
from core.panel import Panel
from core.settings import Settings
from tests.actors import SYSTEM, acting
from tests.conftest import reset_state, with_settings
from tests.tui.helpers import SIZE, settle, sign_up
from tests.tui.test_deployments import upload, wait_for
from tui.app import GhstApp
from tui.screens.billing import BillingScreen, ChangePlanDialog, InvoiceView, PromiseDialog
from tui.screens.confirm import ConfirmDialog
from tui.screens.home import HomeScreen


def text(app: GhstApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def rows(app: GhstApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(n)] for n in range(table.row_count)]


async def test_home_shows_the_balance_and_warns_at_3_days_1_day_and_none_left(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-2")
    share = daily_share(150_000, panel.billing.subscriptions.today())

    async def home_after_credit(kopecks: int) -> tuple[str, bool]:
        if kopecks:
            await panel.billing.balances.adjust(SYSTEM, visitor.user.id, kopecks, "test credit")
        app = GhstApp(panel, visitor)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, HomeScreen)
            banner = app.screen.query_one("#balance", Static)
            return text(app, "#balance"), banner.has_class("-warning")

    shown, warned = await home_after_credit(0)
    assert warned and "0.00 RUB: it no longer pays for your projects" in shown
    shown, warned = await home_after_credit(share)  # exactly one day
    assert warned and "pays for 1 more day" in shown
    shown, warned = await home_after_credit(share * 2)  # three days
    assert warned and "pays for 3 more days" in shown
    shown, warned = await home_after_credit(share * 10)
    assert not warned and "about 13 days at today's spend" in shown


async def test_the_billing_screen_shows_plans_ledger_invoices_and_how_to_pay(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-1")
    await panel.billing.subscriptions.create_project(alice, "notes")
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE project_plans SET billed_from = '2026-11-01'")
        for day in range(1, 31):
            async with conn.transaction():
                await charge_day(conn, date(2026, 11, day), SYSTEM)
        async with conn.transaction():
            issued = await invoices.issue(
                conn, panel.projects, visitor.user.id, date(2026, 11, 1), "Europe/Moscow", "RUB"
            )
    assert issued is not None
    await panel.billing.payments.record_manual(SYSTEM, visitor.user.id, 200_000, "bank transfer")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, BillingScreen)
        assert text(app, "#outlook").startswith("Balance 1 000.00 RUB: about")
        assert rows(app, "#plans") == [
            ["notes", "Free", "0.00 RUB"],
            ["shop", "Host-1", "1 000.00 RUB"],
        ]
        assert rows(app, "#invoices") == [["2026-11", "1", "1 000.00 RUB"]]
        assert "bank transfer or in cash" in text(app, "#instructions")
        # The ledger, newest first, ten a page: 31 entries are four pages.
        ledger = rows(app, "#ledger")
        assert len(ledger) == 10 and ledger[0][1] == "topup"
        assert "] older" in text(app, "#ledger-page")
        for _ in range(3):
            await pilot.press("right_square_bracket")
            await settle(pilot)
        assert len(rows(app, "#ledger")) == 1
        assert rows(app, "#ledger")[0][0] == "2026-11-01"
        assert text(app, "#ledger-page") == "page 4   [ newer"
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert rows(app, "#ledger")[0][0] == "2026-11-11"
        # The invoice opens as its text.
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, InvoiceView)
        assert "Invoice No. 1" in text(app, "#invoice-text")
        assert "shop, plan Host-1" in text(app, "#invoice-text")


async def test_a_plan_change_shows_its_price_asks_and_is_made(panel: Panel) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    today = panel.billing.subscriptions.today()
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ChangePlanDialog)
        await pilot.press("down", "down", "down")  # Free, Host-0, Host-1, Host-2
        await settle(pilot)
        preview = text(app, "#preview")
        extra = daily_share(150_000, today) - daily_share(50_000, today)
        assert "Move shop from Host-0 to Host-2." in preview
        assert "New monthly price: 1 500.00 RUB." in preview
        assert f"Today costs {extra // 100}.{extra % 100:02d} RUB more." in preview
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        plan = await panel.billing.subscriptions.plan_of(alice, "shop")
        assert plan is not None and plan.plan.code == "host-0"  # nothing before the yes
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, BillingScreen)
        assert rows(app, "#plans") == [["shop", "Host-2", "1 500.00 RUB"]]
    plan = await panel.billing.subscriptions.plan_of(alice, "shop")
    assert plan is not None and plan.plan.code == "host-2"


async def test_a_plan_change_the_core_refuses_shows_its_message(panel: Panel) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "free-one")
    await panel.billing.subscriptions.create_project(alice, "paid", "host-0")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("down")  # paid
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ChangePlanDialog)
        await pilot.press("enter")  # Free, highlighted first
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ChangePlanDialog)
        assert text(app, "#change-error") == ONE_FREE
    plan = await panel.billing.subscriptions.plan_of(alice, "paid")
    assert plan is not None and plan.plan.code == "host-0"


def zip_of(size: int) -> bytes:
    """An app of about `size` bytes (stored, not compressed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Dockerfile", "FROM scratch\n")
        archive.writestr("blob.bin", os.urandom(size))
    return buffer.getvalue()


def bars_text(app: GhstApp, project: str) -> str:
    screen = app.screen
    assert isinstance(screen, BillingScreen)
    return str(screen.bars[project].render())


async def test_the_billing_screen_shows_each_projects_plan_and_usage_and_remeasures_on_events(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await panel.billing.subscriptions.create_project(alice, "notes")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        await wait_for(pilot, lambda: panel.events.listening.is_set())
        screen = app.screen
        assert isinstance(screen, BillingScreen)
        shop = bars_text(app, "shop")
        assert shop.startswith("shop · Host-0")
        assert "0.00 / 1 CPU" in shop and "0.0 / 4096.0 MiB" in shop
        assert "Disk" in shop and "0.0 / 1024.0 MiB" in shop
        assert bars_text(app, "notes").startswith("notes · Free")
        measured = screen.bars["notes"].measured

        # An upload from another session: its event measures shop again, and only shop.
        await upload(panel, visitor.user.id, "shop", zip_of(300 * 1024))
        await wait_for(pilot, lambda: "0.3 / 1024.0 MiB" in bars_text(app, "shop"))
        await settle(pilot)
        assert screen.bars["notes"].measured == measured

        # A plan changed elsewhere: the table and the bars show the new plan.
        await panel.billing.subscriptions.change_plan(alice, "shop", "host-2")
        await wait_for(pilot, lambda: bars_text(app, "shop").startswith("shop · Host-2"))
        await settle(pilot)
        assert ["shop", "Host-2", "1 500.00 RUB"] in rows(app, "#plans")
        assert "/ 3 CPU" in bars_text(app, "shop")


async def test_usage_is_measured_after_the_screen_shows_without_blocking_it(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    for name in ("one", "two", "three"):
        await panel.billing.subscriptions.create_project(alice, name, "host-0")
    # Measurements that never end (docker stats hanging): the rest of the screen is there.
    release = asyncio.Event()
    started: list[str] = []
    real = panel.billing.subscriptions.usage

    async def hanging(actor: Actor, project: str) -> ProjectUsage:
        started.append(project)
        await release.wait()
        return await real(actor, project)

    panel.billing.subscriptions.usage = hanging  # type: ignore[method-assign]
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: len(rows(app, "#plans")) == 3)
        # Every project measured at once, each in its own worker, while the screen is up.
        await wait_for(pilot, lambda: sorted(started) == ["one", "three", "two"])
        assert "0.00 RUB" in text(app, "#outlook")
        assert bars_text(app, "two") == "two · measuring…"
        release.set()
        await settle(pilot)
        assert bars_text(app, "two").startswith("two · Host-0")


async def test_a_promised_payment_says_what_it_grants_asks_and_explains_a_refusal(
    panel: Panel,
) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    alice = acting(visitor.user.id)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    spend = daily_share(50_000, panel.billing.subscriptions.today())
    # One taken already (and paid back by a top-up): one is left.
    await panel.billing.promised.take(alice)
    await panel.billing.payments.record_manual(SYSTEM, visitor.user.id, 100, "bank transfer")
    await panel.billing.balances.adjust(SYSTEM, visitor.user.id, -100, "spent")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PromiseDialog)
        shown = text(app, "#promise-text")
        assert f"credits {format_amount(3 * spend, 'RUB')} now: 3 days" in shown
        assert "at most 2 in 28 days" in shown
        assert "You have taken 1 in the last 28 days: 1 left." in shown
        assert (await panel.billing.subscriptions.outlook(alice)).balance == 0  # not before y
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, BillingScreen)
        assert format_amount(3 * spend, "RUB") in text(app, "#outlook")
        assert rows(app, "#ledger")[0][1] == "promised"

        # A second one while this one is open, and (paid back) a third in 28 days: refused,
        # saying why, in the dialog; nothing is credited.
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, PromiseDialog)
        assert "already have a promised payment open" in text(app, "#promise-error")
        await pilot.press("escape")
        await settle(pilot)
        await panel.billing.payments.record_manual(SYSTEM, visitor.user.id, 100, "transfer 2")
        await pilot.press("p")
        await settle(pilot)
        assert "You have taken 2 in the last 28 days: 0 left." in text(app, "#promise-text")
        await pilot.press("y")
        await settle(pilot)
        refusal = text(app, "#promise-error")
        assert refusal.startswith("Not taken. A promised payment can be taken at most 2 times")
    assert (await panel.billing.subscriptions.outlook(alice)).balance == 100


async def test_the_operators_top_up_instructions_are_on_the_billing_screen(
    settings: Settings,
) -> None:
    bank = "Pay to Example Hosting LLC, account 40702810000000000001, quoting your username."
    await reset_state(settings)
    panel = await Panel.open(with_settings(settings, billing_manual_instructions=bank))
    try:
        visitor = await sign_up(panel, "alice")
        app = GhstApp(panel, visitor)
        async with app.run_test(size=(200, 50)) as pilot:
            await settle(pilot)
            await pilot.press("b")
            await settle(pilot)
            assert text(app, "#instructions") == bank
    finally:
        await panel.close()
