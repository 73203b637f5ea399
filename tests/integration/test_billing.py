"""Billing against the real PostgreSQL: plans, project plans, the ledger and balances,
payments and their webhooks, the daily charge. Each test also attacks what it builds: another
tenant's balance, negative amounts, replayed webhooks, two charge runners, two free projects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from core.actor import Actor
from core.billing import ledger
from core.billing.charges import DailyCharge, charge_day
from core.billing.ledger import NewEntry
from core.billing.payments import PaymentService
from core.billing.payments import WebhookTestProvider as SigningProvider
from core.billing.plans import PlanSpec
from core.billing.proration import daily_share
from core.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.fixtures_deploy import eventually

PASSWORD = "correct horse battery"
# Noon in Moscow on 10 December 2026.
NOON = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


async def sign_up(panel: Panel, name: str) -> Actor:
    return acting(await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD))


def at(day: date) -> datetime:
    """Noon of `day` in Moscow."""
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)


async def test_the_default_plans_are_offered_and_a_new_version_leaves_old_projects_alone(
    panel: Panel,
) -> None:
    billing = panel.billing
    offered = {plan.code: plan for plan in await billing.plans.list()}
    assert offered["host-0"].price_kopecks == 50_000
    assert offered["host-2"].ram_mb == 16384
    assert (offered["free"].price_kopecks, offered["free"].cpu_millicores) == (0, 250)
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-1")
    with pytest.raises(PermissionDenied):
        await billing.plans.add_version(alice, PlanSpec("host-1", "Cheap", 1, 1, 1, 1, 1))
    newer = await billing.plans.add_version(
        SYSTEM, PlanSpec("host-1", "Host-1", 120_000, 2000, 8192, 5120, 10)
    )
    assert newer.version == 2
    kept = await billing.subscriptions.plan_of(alice, "shop")
    assert kept is not None and (kept.plan.version, kept.plan.price_kopecks) == (1, 100_000)
    _, plan = await billing.subscriptions.create_project(alice, "diary", "host-1")
    assert (plan.version, plan.price_kopecks) == (2, 120_000)
    # A version is never edited in place, even by SQL.
    async with panel.pool.acquire() as conn:
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE plans SET price_kopecks = 1 WHERE id = $1", plan.id)


async def test_an_account_holds_one_free_project(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    _, plan = await billing.subscriptions.create_project(alice, "first")
    assert plan.is_free
    with pytest.raises(ConflictError, match="one free project"):
        await billing.subscriptions.create_project(alice, "second")
    # Refused as a whole: no project without a plan is left behind.
    assert [project.name for project in await panel.projects.list(alice)] == ["first"]
    await billing.subscriptions.create_project(alice, "paid", "host-0")
    with pytest.raises(ConflictError, match="one free project"):
        await billing.subscriptions.change_plan(alice, "paid", "free")
    # Two free projects raced at once: one wins.
    bob = await sign_up(panel, "bob")
    outcomes = await asyncio.gather(
        billing.subscriptions.create_project(bob, "one"),
        billing.subscriptions.create_project(bob, "two"),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ConflictError", "tuple"]


async def test_another_tenants_plan_and_balance_read_as_not_found(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    bob = await sign_up(panel, "bob")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    with pytest.raises(NotFoundError):
        await billing.balances.balance(bob, owner_id=alice.owner_id)
    with pytest.raises(NotFoundError):
        await billing.balances.history(bob, owner_id=alice.owner_id)
    with pytest.raises(NotFoundError):
        await billing.subscriptions.change_plan(bob, "shop", "free")
    with pytest.raises(NotFoundError):
        await billing.subscriptions.plan_of(bob, "shop")
    # Money moves only through payments and operators.
    with pytest.raises(PermissionDenied):
        await billing.balances.adjust(bob, bob.owner_id, 1_000_000, "gift to myself")
    with pytest.raises(PermissionDenied):
        await billing.payments.record_manual(bob, bob.owner_id, 1_000_000, "cash")
    with pytest.raises(ValidationError):
        await billing.payments.record_manual(SYSTEM, bob.owner_id, -500, "negative top-up")
    with pytest.raises(ValidationError):
        await billing.payments.start(bob, -500)
    token = Actor.for_token(
        await panel.accounts.get(alice.owner_id),
        token_id=1,
        prefix="tok",
        scopes=frozenset({"read", "deploy"}),
    )
    with pytest.raises(PermissionDenied):
        await billing.subscriptions.change_plan(token, "shop", "host-2")
    assert await billing.balances.balance(bob) == 0


async def test_the_kept_balance_equals_the_ledger_rebuilt(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    user_id = alice.owner_id
    rng = random.Random(11)
    kinds = ["topup", "charge", "refund", "adjustment", "promised"]
    async with panel.pool.acquire() as conn:
        for number in range(300):
            kind = rng.choice(kinds)
            amount = rng.randint(1, 100_000)
            if kind == "charge" or (kind == "adjustment" and rng.random() < 0.5):
                amount = -amount
            # Some keys come twice: a replay must change nothing.
            key = f"random:{rng.randint(0, 250) if number % 3 == 0 else number + 1000}"
            new = NewEntry(user_id, kind, amount, key, "tests")  # type: ignore[arg-type]
            async with conn.transaction():
                # ConflictError: the key was posted before with other details.
                with contextlib.suppress(ConflictError):
                    await ledger.post(conn, new)
        kept = await ledger.balance(conn, user_id)
        assert kept == await ledger.rebuilt_balance(conn, user_id)
        assert (kept, kept) == await panel.billing.balances.check(SYSTEM, user_id)
        # Append-only: an entry cannot be edited or removed.
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE ledger SET amount = 1 WHERE user_id = $1", user_id)
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("DELETE FROM ledger WHERE user_id = $1", user_id)


async def test_a_replayed_key_returns_the_first_entry_and_changes_nothing(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    first = await panel.billing.balances.adjust(SYSTEM, alice.owner_id, 700, "goodwill", key="k1")
    again = await panel.billing.balances.adjust(SYSTEM, alice.owner_id, 700, "goodwill", key="k1")
    assert again == first
    assert await panel.billing.balances.balance(alice) == 700
    assert len(await panel.billing.balances.history(alice)) == 1


async def test_a_webhook_credits_once_when_replayed_or_concurrent(panel: Panel) -> None:
    provider = SigningProvider(b"webhook secret")
    payments = PaymentService(panel.pool, [provider], "RUB")
    alice = await sign_up(panel, "alice")
    payment, instructions = await payments.start(alice, 50_000, "test")
    assert payment.status == "pending" and payment.provider_payment_id in instructions
    body = provider.webhook(payment.provider_payment_id, 50_000)
    # A forged or tampered webhook credits nothing.
    with pytest.raises(PermissionDenied):
        await payments.webhook("test", body, "0" * 64)
    greedy = provider.webhook(payment.provider_payment_id, 5_000_000)
    with pytest.raises(ValidationError):
        await payments.webhook("test", greedy, provider.sign(greedy))
    assert await panel.billing.balances.balance(alice) == 0
    results = await asyncio.gather(
        *(payments.webhook("test", body, provider.sign(body)) for _ in range(5))
    )
    assert {result.status for result in results} == {"confirmed"}
    await payments.webhook("test", body, provider.sign(body))  # replayed a day later
    assert await panel.billing.balances.balance(alice) == 50_000
    topups = [entry for entry in await panel.billing.balances.history(alice)]
    assert [(entry.kind, entry.amount) for entry in topups] == [("topup", 50_000)]
    # Another tenant's payment id gets nobody else's money: it credits its own payer.
    bob = await sign_up(panel, "bob")
    assert await payments.list(bob) == []
    with pytest.raises(NotFoundError):
        await payments.list(bob, owner_id=alice.owner_id)


async def test_an_operator_records_a_transfer_once_per_reference(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    payments = panel.billing.payments
    _, new = await payments.record_manual(SYSTEM, alice.owner_id, 30_000, "bank", reference="tx-9")
    _, again = await payments.record_manual(
        SYSTEM, alice.owner_id, 30_000, "bank", reference="tx-9"
    )
    assert (new, again) == (True, False)
    bob = await sign_up(panel, "bob")
    with pytest.raises(ConflictError):
        await payments.record_manual(SYSTEM, bob.owner_id, 30_000, "bank", reference="tx-9")
    assert await panel.billing.balances.balance(alice) == 30_000
    assert await panel.billing.balances.balance(bob) == 0


@pytest.mark.parametrize(("year", "month"), [(2026, 2), (2028, 2), (2026, 11), (2026, 12)])
async def test_a_months_charges_add_up_to_the_plans_price(
    panel: Panel, year: int, month: int
) -> None:
    alice = await sign_up(panel, "alice")
    start = date(year, month, 1)
    for code in ("host-0", "host-1", "host-2"):
        await panel.billing.subscriptions.create_project(alice, f"on-{code}", code)
    await panel.billing.subscriptions.create_project(alice, "gratis")
    async with panel.pool.acquire() as conn:
        # Billed from the first of the month (the projects were made "today").
        await conn.execute("UPDATE project_plans SET billed_from = $1", start)
        day = start
        while day.month == month:
            async with conn.transaction():
                await charge_day(conn, day, SYSTEM)
            day += timedelta(1)
    assert await panel.billing.balances.balance(alice) == -(50_000 + 100_000 + 150_000)
    history = await panel.billing.balances.history(alice, limit=500)
    assert all(entry.kind == "charge" for entry in history)


async def test_downtime_is_caught_up_once_and_two_runners_charge_once(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    charges = DailyCharge(panel.pool, "Europe/Moscow")
    today = date(2026, 12, 10)
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE project_plans SET billed_from = $1", today)
    first = await charges.run(at(today))
    assert first is not None and first.posted == 1
    # Three days down, then two workers wake at once.
    later = today + timedelta(3)
    runs = await asyncio.gather(*(charges.run(at(later)) for _ in range(4)))
    posted = sum(run.posted for run in runs if run is not None)
    assert posted == 3
    again = await charges.run(at(later))
    assert again is not None and again.posted == 0
    expected = sum(daily_share(50_000, today + timedelta(n)) for n in range(4))
    assert await panel.billing.balances.balance(alice) == -expected
    days = sorted(entry.day for entry in await panel.billing.balances.history(alice))
    assert days == [today + timedelta(n) for n in range(4)]


async def test_a_charge_day_follows_moscow_not_utc(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE project_plans SET billed_from = '2026-12-01'")
    # 21:30 UTC on 31 December is already 1 January in Moscow.
    run = await DailyCharge(panel.pool, "Europe/Moscow").run(
        datetime(2026, 12, 31, 21, 30, tzinfo=UTC)
    )
    assert run is not None and run.days == (date(2027, 1, 1),)
    entries = await panel.billing.balances.history(alice)
    assert [(entry.day, entry.amount) for entry in entries] == [
        (date(2027, 1, 1), -daily_share(50_000, date(2027, 1, 1)))
    ]


async def test_an_upgrade_pays_todays_difference_once(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    today = billing.subscriptions.today()
    await billing.charges.run()
    paid_today = daily_share(50_000, today)
    assert await billing.balances.balance(alice) == -paid_today
    changed = await billing.subscriptions.change_plan(alice, "shop", "host-2")
    assert changed.plan.code == "host-2"
    after_upgrade = -daily_share(150_000, today)
    assert await billing.balances.balance(alice) == after_upgrade
    # Down and up again the same day: today is paid at host-2 already.
    await billing.subscriptions.change_plan(alice, "shop", "host-0")
    await billing.subscriptions.change_plan(alice, "shop", "host-2")
    await billing.charges.run()
    assert await billing.balances.balance(alice) == after_upgrade
    # A free project moved to a paid plan pays from today, not from its creation day.
    await billing.subscriptions.create_project(alice, "diary")
    await billing.subscriptions.change_plan(alice, "diary", "host-1")
    await billing.charges.run()
    blog = await billing.subscriptions.plan_of(alice, "diary")
    assert blog is not None and blog.billed_from == today
    assert await billing.balances.balance(alice) == after_upgrade - daily_share(100_000, today)


async def test_deleting_a_charged_project_keeps_its_entries_and_the_balance(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    await panel.billing.charges.run()
    charged = await panel.billing.balances.balance(alice)
    assert charged < 0
    await panel.projects.delete(alice, "shop", "shop")
    entries = await panel.billing.balances.history(alice)
    assert [(entry.amount, entry.project_id) for entry in entries] == [(charged, None)]
    assert await panel.billing.balances.check(SYSTEM, alice.owner_id) == (charged, charged)


async def test_the_deployment_worker_runs_the_daily_charge(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    today = panel.billing.subscriptions.today()
    stop = asyncio.Event()
    worker = asyncio.create_task(panel.worker().run(stop))
    try:

        async def charged() -> bool:
            return await panel.billing.balances.balance(alice) != 0

        await eventually(charged, within=60)
    finally:
        stop.set()
        await worker
    assert await panel.billing.balances.balance(alice) == -daily_share(50_000, today)


async def test_suspended_and_free_projects_are_not_charged(panel: Panel) -> None:
    billing = panel.billing
    alice = await sign_up(panel, "alice")
    await billing.subscriptions.create_project(alice, "shop", "host-0")
    await billing.subscriptions.create_project(alice, "halted", "host-2")
    await billing.subscriptions.create_project(alice, "gratis")
    async with panel.pool.acquire() as conn:
        # Suspension's service comes with the next part of billing; its flag is here already.
        await conn.execute(
            "UPDATE project_plans SET suspended_at = now() WHERE project_id ="
            " (SELECT id FROM projects WHERE name = 'halted')"
        )
    await billing.charges.run()
    entries = await billing.balances.history(alice)
    shop = await billing.subscriptions.plan_of(alice, "shop")
    assert shop is not None
    assert [entry.project_id for entry in entries] == [shop.project_id]
