"""Invoices against the real PostgreSQL: what a month's invoice says, numbers without gaps
whatever runs at once or rolls back, issued invoices that never change, corrections on the
next invoice, and another tenant's invoices out of reach."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import asyncpg
import pytest

from core.actor import Actor
from core.billing import invoices
from core.billing.charges import DailyCharge, charge_day
from core.billing.invoices import InvoiceRun
from core.billing.proration import daily_share
from core.errors import NotFoundError
from core.panel import Panel
from tests.actors import SYSTEM, acting

PASSWORD = "correct horse battery"
ZONE = "Europe/Moscow"
NOVEMBER = date(2026, 11, 1)
DECEMBER = date(2026, 12, 1)


async def sign_up(panel: Panel, name: str) -> Actor:
    return acting(await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD))


def at(day: date) -> datetime:
    """Noon of `day` in Moscow."""
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)


async def bill_from(panel: Panel, project: str, day: date) -> None:
    """The project pays from `day` (projects are made "today")."""
    found = await panel.projects.by_name(project)
    assert found is not None
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE project_plans SET billed_from = $2 WHERE project_id = $1", found.id, day
        )


async def charge_through(panel: Panel, first: date, last: date) -> None:
    """The daily charge over first..last, as the workers would have run it."""
    charges = DailyCharge(panel.pool, ZONE)
    assert await charges.run(at(first)) is not None
    assert await charges.run(at(last)) is not None


def runner(panel: Panel) -> InvoiceRun:
    return InvoiceRun(panel.pool, panel.projects, ZONE, "RUB")


async def issue(panel: Panel, user_id: int, month: date) -> invoices.Invoice | None:
    async with panel.pool.acquire() as conn, conn.transaction():
        return await invoices.issue(conn, panel.projects, user_id, month, ZONE, "RUB")


async def numbers(panel: Panel) -> list[int]:
    async with panel.pool.acquire() as conn:
        rows = await conn.fetch("SELECT number FROM invoices ORDER BY number")
    return [row["number"] for row in rows]


async def test_a_months_invoice_bills_each_project_with_its_plan_days_and_charges(
    panel: Panel,
) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    await billing.subscriptions.create_project(alice, "diary", "host-1")
    await billing.subscriptions.create_project(alice, "gratis")
    await bill_from(panel, "shop", NOVEMBER)
    await bill_from(panel, "diary", date(2026, 11, 21))
    await bill_from(panel, "gratis", NOVEMBER)
    # A top-up is a payment, not a line.
    await billing.payments.record_manual(SYSTEM, alice.owner_id, 100_000, "bank transfer")
    charges = DailyCharge(panel.pool, ZONE)
    await charges.run(at(NOVEMBER))
    await charges.run(at(date(2026, 11, 29)))

    # Until November's last day is charged its invoices wait; the run after that issues once.
    assert await runner(panel).run(at(date(2026, 12, 1))) is None
    await charges.run(at(date(2026, 12, 2)))
    result = await runner(panel).run(at(date(2026, 12, 2)))
    assert result is not None and (result.month, result.issued) == (NOVEMBER, 1)
    assert await runner(panel).run(at(date(2026, 12, 3))) is None  # the month is done
    assert await issue(panel, alice.owner_id, NOVEMBER) is not None  # the same one

    [invoice] = await panel.invoices.list(alice)
    assert (invoice.number, invoice.label, invoice.currency) == (1, "2026-11", "RUB")
    lines = {line.project_name: line for line in invoice.lines}
    assert set(lines) == {"shop", "diary"}  # the free project costs nothing, so is no line
    shop, diary = lines["shop"], lines["diary"]
    assert (shop.plan_name, shop.days, shop.amount) == ("Host-0", 30, 50_000)
    diary_days = [date(2026, 11, day) for day in range(21, 31)]
    assert (diary.plan_name, diary.days) == ("Host-1", 10)
    assert diary.amount == sum(daily_share(100_000, day) for day in diary_days)
    # The lines add up to November's charges in the ledger, December's stay for December.
    history = await billing.balances.history(alice, limit=500)
    november = [e for e in history if e.kind == "charge" and e.day and e.day < DECEMBER]
    assert invoice.total == sum(line.amount for line in invoice.lines)
    assert invoice.total == -sum(entry.amount for entry in november)
    assert any(e.kind == "charge" and e.day == DECEMBER for e in history)


async def test_numbers_have_no_gaps_with_concurrent_issuers_and_a_rollback(panel: Panel) -> None:
    users = [await sign_up(panel, f"user{n}") for n in range(6)]
    for n, user in enumerate(users):
        await panel.billing.subscriptions.create_project(user, f"site{n}", "host-0")
        await bill_from(panel, f"site{n}", NOVEMBER)
    await charge_through(panel, NOVEMBER, DECEMBER)

    # An issue whose transaction rolls back gives its number back.
    with pytest.raises(RuntimeError):
        async with panel.pool.acquire() as conn, conn.transaction():
            made = await invoices.issue(
                conn, panel.projects, users[0].owner_id, NOVEMBER, ZONE, "RUB"
            )
            assert made is not None and made.number == 1
            raise RuntimeError("the caller failed after the invoice was written")
    assert await numbers(panel) == []

    # Every account at once, each twice: one invoice each, numbered 1..6.
    made = await asyncio.gather(
        *(issue(panel, user.owner_id, NOVEMBER) for user in users for _ in range(2))
    )
    assert all(invoice is not None for invoice in made)
    assert await numbers(panel) == [1, 2, 3, 4, 5, 6]
    for user in users:
        [invoice] = await panel.invoices.list(user)
        assert invoice.total == 50_000

    # Runners at once after that: nothing more to issue, no number taken.
    await asyncio.gather(*(runner(panel).run(at(DECEMBER)) for _ in range(3)))
    assert await numbers(panel) == [1, 2, 3, 4, 5, 6]


async def test_runners_at_once_issue_each_invoice_once(panel: Panel) -> None:
    users = [await sign_up(panel, f"user{n}") for n in range(4)]
    for n, user in enumerate(users):
        await panel.billing.subscriptions.create_project(user, f"site{n}", "host-1")
        await bill_from(panel, f"site{n}", NOVEMBER)
    await charge_through(panel, NOVEMBER, DECEMBER)
    results = await asyncio.gather(*(runner(panel).run(at(DECEMBER)) for _ in range(4)))
    assert sum(result.issued for result in results if result is not None) == 4
    assert await numbers(panel) == [1, 2, 3, 4]


async def test_missed_months_are_caught_up_each_on_its_own_invoice(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-2")
    await bill_from(panel, "shop", date(2026, 10, 1))
    charges = DailyCharge(panel.pool, ZONE)
    for day in (date(2026, 10, 1), date(2026, 11, 15), date(2026, 12, 5)):
        await charges.run(at(day))
    # The panel was down over November 1st: October and November are issued together.
    result = await runner(panel).run(at(date(2026, 12, 5)))
    assert result is not None and result.issued == 2
    issued = await panel.invoices.list(alice)
    assert [(i.label, i.number, i.total) for i in issued] == [
        ("2026-11", 2, 150_000),
        ("2026-10", 1, 150_000),
    ]


async def test_an_issued_invoice_never_changes(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await bill_from(panel, "shop", NOVEMBER)
    await charge_through(panel, NOVEMBER, DECEMBER)
    invoice = await issue(panel, alice.owner_id, NOVEMBER)
    assert invoice is not None
    async with panel.pool.acquire() as conn:
        for statement, args in (
            ("UPDATE invoices SET total = 0 WHERE id = $1", (invoice.id,)),
            ("DELETE FROM invoices WHERE id = $1", (invoice.id,)),
            ("UPDATE invoice_lines SET amount = 1 WHERE invoice_id = $1", (invoice.id,)),
            ("DELETE FROM invoice_lines WHERE invoice_id = $1", (invoice.id,)),
            (
                "INSERT INTO invoice_lines (invoice_id, position, description, amount)"
                " VALUES ($1, 99, 'extra', 1)",
                (invoice.id,),
            ),
            ("DELETE FROM invoice_entries WHERE invoice_id = $1", (invoice.id,)),
        ):
            with pytest.raises(asyncpg.RestrictViolationError, match="never changes"):
                await conn.execute(statement, *args)
    assert await panel.invoices.get(alice, "2026-11") == invoice
    # Deleting the account still removes its invoices (a cascade, not a change).
    async with panel.pool.acquire() as conn:
        await conn.execute("DELETE FROM users WHERE id = $1", alice.owner_id)
        assert await conn.fetchval("SELECT count(*) FROM invoice_lines") == 0


async def test_a_late_entry_of_an_invoiced_month_lands_on_the_next_invoice(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    await bill_from(panel, "shop", NOVEMBER)
    await charge_through(panel, NOVEMBER, DECEMBER)
    november = await issue(panel, alice.owner_id, NOVEMBER)
    assert november is not None
    # A project that should have paid from November 20 is charged for those days late.
    await billing.subscriptions.create_project(alice, "late", "host-1")
    await bill_from(panel, "late", date(2026, 11, 20))
    async with panel.pool.acquire() as conn:
        for day in range(20, 31):
            async with conn.transaction():
                await charge_day(conn, date(2026, 11, day), SYSTEM)
    late_total = sum(daily_share(100_000, date(2026, 11, day)) for day in range(20, 31))

    assert await panel.invoices.get(alice, "2026-11") == november  # unchanged
    december = await issue(panel, alice.owner_id, DECEMBER)
    assert december is not None and december.number == november.number + 1
    [correction] = [line for line in december.lines if line.project_name == "late"]
    assert "correction for November 2026" in correction.description
    assert (correction.days, correction.amount) == (11, late_total)
    # Every charge is billed, once: the two invoices add up to all of them.
    history = await billing.balances.history(alice, limit=500)
    charged = -sum(entry.amount for entry in history if entry.kind == "charge")
    assert november.total + december.total == charged


async def test_another_tenants_invoices_are_not_found(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    bob = await sign_up(panel, "bob")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await bill_from(panel, "shop", NOVEMBER)
    await charge_through(panel, NOVEMBER, DECEMBER)
    assert await issue(panel, alice.owner_id, NOVEMBER) is not None
    assert await panel.invoices.list(bob) == []
    for label in ("2026-11", "2026-1", "../2026-11", "2026-11.html", ""):
        with pytest.raises(NotFoundError):
            await panel.invoices.get(bob, label)
    with pytest.raises(NotFoundError):
        await panel.invoices.get(bob, "2026-11", owner_id=alice.owner_id)
    with pytest.raises(NotFoundError):
        await panel.invoices.list(bob, owner_id=alice.owner_id)
    assert (await panel.invoices.get(alice, "2026-11")).user_id == alice.owner_id


async def test_the_outlook_counts_days_of_todays_spend(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    empty = await billing.subscriptions.outlook(alice)
    assert (empty.balance, empty.daily_spend, empty.days_left, empty.warning) == (
        0,
        0,
        None,
        "none",
    )
    await billing.subscriptions.create_project(alice, "shop", "host-2")
    today = billing.subscriptions.today()
    share = daily_share(150_000, today)
    await billing.payments.record_manual(SYSTEM, alice.owner_id, share * 2 + 1, "cash")
    outlook = await billing.subscriptions.outlook(alice)
    assert (outlook.daily_spend, outlook.days_left, outlook.warning) == (share, 2, "3 days")
    # A suspended project spends nothing.
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE project_plans SET suspended_at = now()")
    assert (await billing.subscriptions.outlook(alice)).daily_spend == 0
    bob = await sign_up(panel, "bob")
    with pytest.raises(NotFoundError):
        await billing.subscriptions.outlook(bob, owner_id=alice.owner_id)


async def test_a_plan_change_preview_says_what_today_costs_and_the_new_price(
    panel: Panel,
) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    today = billing.subscriptions.today()
    preview = await billing.subscriptions.preview_change(alice, "shop", "host-2")
    assert preview.current is not None and preview.current.code == "host-0"
    assert preview.monthly == 150_000
    assert preview.extra_today == daily_share(150_000, today) - daily_share(50_000, today)
    down = await billing.subscriptions.preview_change(alice, "shop", "free")
    assert (down.extra_today, down.monthly) == (0, 0)
    bob = await sign_up(panel, "bob")
    with pytest.raises(NotFoundError):
        await billing.subscriptions.preview_change(bob, "shop", "host-2")
    # Nothing changed.
    plan = await billing.subscriptions.plan_of(alice, "shop")
    assert plan is not None and plan.plan.code == "host-0"


async def test_the_worker_issues_invoices_as_a_chore(panel: Panel) -> None:
    chores = [chore for _, chore in panel.worker()._chores]
    assert panel.billing.invoice_run.run_logged in chores


async def test_a_plan_change_mid_month_shows_each_plans_days(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    await bill_from(panel, "shop", NOVEMBER)
    async with panel.pool.acquire() as conn:
        for day in range(1, 31):
            if day == 15:
                await billing.subscriptions.change_plan(alice, "shop", "host-2")
            async with conn.transaction():
                await charge_day(conn, date(2026, 11, day), SYSTEM)
    invoice = await issue(panel, alice.owner_id, NOVEMBER)
    assert invoice is not None
    hosting = [line for line in invoice.lines if line.description == "Hosting"]
    assert [(line.project_name, line.plan_name, line.days) for line in hosting] == [
        ("shop", "Host-0", 14),
        ("shop", "Host-2", 16),
    ]
    assert hosting[0].amount == sum(daily_share(50_000, date(2026, 11, d)) for d in range(1, 15))
    assert hosting[1].amount == sum(daily_share(150_000, date(2026, 11, d)) for d in range(15, 31))
