"""`:billing`'s read models against the real PostgreSQL (migration 0021): revenue per calendar
month (charges and payments, the last 12 months) and every account's invoices, newest first,
keyset-paged and filtered by user, each readable as its owner reads it; staff only."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.actor import Actor
from core.admin import read_models
from core.billing.invoice_render import as_text
from core.billing.proration import daily_share
from core.errors import NotFoundError, PermissionDenied
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.integration.test_invoices import (
    NOVEMBER,
    ZONE,
    bill_from,
    charge_through,
    issue,
    sign_up,
)

HOST_0 = 50_000


async def staff(panel: Panel) -> tuple[Actor, Actor]:
    await panel.accounts.sign_up("root", "root@example.com", "correct horse battery")
    await panel.accounts.sign_up("olga", "olga@example.com", "correct horse battery")
    admin = await panel.accounts.set_role(SYSTEM, "root", "admin")
    operator = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    return Actor.for_staff(admin), Actor.for_staff(operator)


async def test_revenue_sums_each_months_charges_and_payments(panel: Panel) -> None:
    today = datetime.now(ZoneInfo(ZONE)).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    month_end = today.replace(day=1) - timedelta(days=1)
    alice = await sign_up(panel, "alice")
    bob = await sign_up(panel, "bob")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await bill_from(panel, "shop", last_month)
    await panel.billing.payments.record_manual(SYSTEM, alice.owner_id, 100_000, "bank")
    await panel.billing.payments.record_manual(SYSTEM, bob.owner_id, 2_500, "cash")
    await panel.billing.balances.adjust(SYSTEM, bob.owner_id, 7_000, "goodwill")  # not paid
    await charge_through(panel, last_month, month_end)

    async with panel.pool.acquire() as conn:
        rows = await read_models.revenue(conn, today, ZONE)
    assert len(rows) == 12 and rows[0].month == today.replace(day=1)
    assert [r.month for r in rows] == sorted((r.month for r in rows), reverse=True)
    days = [last_month + timedelta(days=n) for n in range((month_end - last_month).days + 1)]
    assert (rows[1].charged_kopecks, rows[1].charges) == (
        sum(daily_share(HOST_0, day) for day in days),
        len(days),
    )
    assert rows[0].paid_kopecks == 102_500  # the top-ups only, in the month they came
    assert rows[0].charged_kopecks == 0 and rows[1].paid_kopecks == 0
    assert all(r.charged_kopecks == r.paid_kopecks == 0 for r in rows[2:])
    # The running totals say what the ledger itself adds up to, month by month.
    async with panel.pool.acquire() as conn:
        ledger = await conn.fetch(
            "SELECT kind, date_trunc('month', CASE kind WHEN 'charge' THEN day::timestamp"
            " ELSE created_at AT TIME ZONE $1 END)::date AS month, sum(amount) AS kopecks"
            " FROM ledger WHERE kind IN ('charge', 'topup') GROUP BY 1, 2",
            ZONE,
        )
    by_month = {(r["kind"], r["month"]): abs(r["kopecks"]) for r in ledger}
    assert {("charge", r.month): r.charged_kopecks for r in rows if r.charged_kopecks} | {
        ("topup", r.month): r.paid_kopecks for r in rows if r.paid_kopecks
    } == by_month


async def test_staff_read_revenue_and_users_do_not(panel: Panel) -> None:
    admin, operator = await staff(panel)
    assert len(await panel.admin.revenue(operator)) == 12
    assert len(await panel.admin.revenue(admin, months=3)) == 3
    bob = await sign_up(panel, "bob")
    with pytest.raises(PermissionDenied):
        await panel.admin.revenue(bob)


async def test_invoices_are_listed_newest_first_paged_filtered_and_read_as_issued(
    panel: Panel,
) -> None:
    _, operator = await staff(panel)
    names = ["alice", "bob", "bobby", "carol"]
    users = {name: await sign_up(panel, name) for name in names}
    for name, user in users.items():
        await panel.billing.subscriptions.create_project(user, f"{name}-site", "host-0")
        await bill_from(panel, f"{name}-site", NOVEMBER)
    await charge_through(panel, NOVEMBER, date(2026, 11, 30))
    for name in names:
        assert await issue(panel, users[name].owner_id, NOVEMBER) is not None

    first = await panel.admin.invoices(operator, limit=3)
    assert [(r.number, r.username) for r in first] == [(4, "carol"), (3, "bobby"), (2, "bob")]
    rest = await panel.admin.invoices(operator, before_number=first[-1].number, limit=3)
    assert [(r.number, r.username) for r in rest] == [(1, "alice")]
    assert [r.username for r in await panel.admin.invoices(operator, "BOB")] == ["bobby", "bob"]
    assert await panel.admin.invoices(operator, "b%") == []  # wildcards are literal

    mine = await panel.invoices.get(users["bob"], "2026-11")
    shown = await panel.admin.invoice(operator, 2)
    assert shown == mine
    assert as_text(shown, "bob") == as_text(mine, "bob")
    with pytest.raises(NotFoundError):
        await panel.admin.invoice(operator, 99)
    for outsider in (users["alice"], acting(await panel.accounts.get(users["bob"].owner_id))):
        with pytest.raises(PermissionDenied):
            await panel.admin.invoices(outsider)
        with pytest.raises(PermissionDenied):
            await panel.admin.invoice(outsider, 2)


def test_twelve_months_back_cross_the_year() -> None:
    assert read_models.months_back(date(2026, 3, 1), 11) == date(2025, 4, 1)
    assert read_models.months_back(date(2026, 1, 1), 1) == date(2025, 12, 1)
