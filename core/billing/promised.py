"""Promised payments (this module owns `promised_payments`): credit of a few days' spend for a
user whose money has run out, so the sites run (or come back) until the money arrives.

The rules, as prepaid hosts keep them:
- the credit is PROMISE_DAYS days of the account's current daily spend (every paid project,
  suspended ones included, at today's share of its plan);
- it can be taken at most MAX_PROMISES times in WINDOW, and never while one is still open;
- it is for an account that is running out: refused while the balance covers that spend;
- it is taken back once, at the first of: the next top-up (a payment), or its expiry
  PROMISE_DAYS after it was taken. Taking back is a negative `adjustment` keyed
  `promised-back:<id>`; if that leaves the balance at zero or below, the grace period before
  a suspension starts again from then, as for any balance that runs out.

A promise posts a ledger entry of kind `promised` and, like any credit, resumes the account's
suspended projects when the balance is above zero afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from core.actor import Actor
from core.audit import entries as audit
from core.billing import ledger, subscriptions
from core.billing.ledger import NewEntry
from core.billing.money import format_amount
from core.billing.proration import billing_day
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import ConflictError, PanelError, ValidationError

log = logging.getLogger(__name__)

PROMISE_DAYS = 3
MAX_PROMISES = 2
WINDOW = timedelta(days=28)
PROMISE_COLUMNS = "id, user_id, amount, taken_at, expires_at, settled_at"

# What a credit runs in its transaction (the resume of suspended projects): (conn, account).
CreditHook = Callable[[Connection, int], Awaitable[object]]


@dataclass(frozen=True)
class Promise:
    id: int
    user_id: int
    amount: int
    taken_at: datetime
    expires_at: datetime
    settled_at: datetime | None


def _promise(row: asyncpg.Record) -> Promise:
    return Promise(**dict(row))


async def open_promises(conn: Connection, user_id: int) -> list[Promise]:
    rows = await conn.fetch(
        f"SELECT {PROMISE_COLUMNS} FROM promised_payments WHERE user_id = $1"
        " AND settled_at IS NULL ORDER BY id FOR UPDATE",
        user_id,
    )
    return [_promise(row) for row in rows]


async def take_back(conn: Connection, promise: Promise, actor: str, why: str) -> None:
    """Post the promise's debit and mark it settled (the caller holds its row)."""
    entry, _ = await ledger.post(
        conn,
        NewEntry(
            promise.user_id,
            "adjustment",
            -promise.amount,
            f"promised-back:{promise.id}",
            actor,
            f"promised payment of {promise.taken_at:%Y-%m-%d} taken back ({why})",
        ),
    )
    await conn.execute(
        "UPDATE promised_payments SET settled_at = now(), settled_ledger_id = $2 WHERE id = $1",
        promise.id,
        entry.id,
    )


async def take_back_open(conn: Connection, user_id: int, actor: str, why: str) -> int:
    """Take back every open promise of the account (at a top-up); how many."""
    promises = await open_promises(conn, user_id)
    for promise in promises:
        await take_back(conn, promise, actor, why)
    return len(promises)


async def expired_accounts(conn: Connection, now: datetime) -> list[int]:
    rows = await conn.fetch(
        "SELECT DISTINCT user_id FROM promised_payments WHERE settled_at IS NULL"
        " AND expires_at <= $1 ORDER BY user_id",
        now,
    )
    return [int(row["user_id"]) for row in rows]


class PromisedPayments:
    def __init__(
        self, pool: Pool, time_zone: str, currency: str, after_credit: CreditHook | None = None
    ) -> None:
        self._pool = pool
        self._time_zone = time_zone
        self._currency = currency
        self._after_credit = after_credit
        self.actor = Actor.system("billing").acting_from("scheduler")

    async def offer(
        self, actor: Actor, *, owner_id: int | None = None, now: datetime | None = None
    ) -> int:
        """How much a promised payment would credit now (kopecks), without taking it."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        day = billing_day(now or datetime.now(UTC), self._time_zone)
        async with reading(self._pool) as db:
            return PROMISE_DAYS * await subscriptions.daily_spend_with_suspended(db, user_id, day)

    async def take(
        self,
        actor: Actor,
        *,
        owner_id: int | None = None,
        now: datetime | None = None,
        conn: Connection | None = None,
    ) -> Promise:
        """Credit PROMISE_DAYS days of spend to the account (the actor's own, or `owner_id`'s
        for an operator), within the limits above; it resumes suspended projects when the
        balance is then above zero. Refusals say why, in words for the user."""
        actor.require("deploy")
        actor.refuse_token("take a promised payment")  # it spends the account's credit
        user_id = actor.on_behalf_of(owner_id)
        now = now or datetime.now(UTC)
        day = billing_day(now, self._time_zone)
        async with transaction(self._pool, conn) as tx:
            # The balance row serialises every credit of the account: two sessions taking a
            # promise at once count each other's.
            await ledger.lock_balance(tx, user_id)
            if await open_promises(tx, user_id):
                raise ConflictError(
                    "You already have a promised payment open: it is taken back at your next"
                    " top-up. Top up to take another one later.",
                    title="Promised payment open",
                )
            taken = await tx.fetchval(
                "SELECT count(*) FROM promised_payments WHERE user_id = $1 AND taken_at > $2",
                user_id,
                now - WINDOW,
            )
            if taken >= MAX_PROMISES:
                raise ConflictError(
                    f"A promised payment can be taken at most {MAX_PROMISES} times in"
                    f" {WINDOW.days} days, and you have used them: top up your balance.",
                    title="No promised payment left",
                )
            spend = await subscriptions.daily_spend_with_suspended(tx, user_id, day)
            if spend <= 0:
                raise ValidationError(
                    "You have no paid project, so there is nothing a promised payment would pay."
                )
            amount = PROMISE_DAYS * spend
            if await ledger.balance(tx, user_id) >= amount:
                raise ValidationError(
                    f"Your balance still covers {PROMISE_DAYS} days: a promised payment is for"
                    " when the money has run out."
                )
            return await self._post(tx, user_id, amount, now, actor)

    async def _post(
        self, tx: Connection, user_id: int, amount: int, now: datetime, actor: Actor
    ) -> Promise:
        row = await tx.fetchrow(
            "INSERT INTO promised_payments (user_id, amount, taken_at, expires_at, ledger_id)"
            f" VALUES ($1, $2, $3, $4, 0) RETURNING {PROMISE_COLUMNS}",
            user_id, amount, now, now + timedelta(days=PROMISE_DAYS),
        )  # fmt: skip
        assert row is not None
        promise = _promise(row)
        entry, _ = await ledger.post(
            tx,
            NewEntry(
                user_id,
                "promised",
                amount,
                f"promised:{promise.id}",
                actor.label,
                f"promised payment of {format_amount(amount, self._currency)} until"
                f" {promise.expires_at:%Y-%m-%d %H:%M} UTC",
            ),
        )
        await tx.execute(
            "UPDATE promised_payments SET ledger_id = $2 WHERE id = $1", promise.id, entry.id
        )
        await audit.record(
            tx,
            actor,
            "promised.take",
            audit.Target("account", None, user_id, user_id),
            metadata={"amount_kopecks": amount, "promise": promise.id},
        )
        if self._after_credit is not None:
            await self._after_credit(tx, user_id)
        return promise

    async def history(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> list[Promise]:
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            rows = await db.fetch(
                f"SELECT {PROMISE_COLUMNS} FROM promised_payments WHERE user_id = $1"
                " ORDER BY id DESC LIMIT 50",
                user_id,
            )
        return [_promise(row) for row in rows]

    async def settle_expired(self, now: datetime | None = None) -> int:
        """Take back the promises that expired unpaid (a worker's chore); how many."""
        now = now or datetime.now(UTC)
        async with reading(self._pool) as db:
            accounts = await expired_accounts(db, now)
        settled = 0
        for user_id in accounts:
            async with transaction(self._pool) as tx:
                await ledger.lock_balance(tx, user_id)
                for promise in await open_promises(tx, user_id):
                    if promise.expires_at <= now:
                        await take_back(tx, promise, self.actor.label, "it expired")
                        settled += 1
        return settled

    async def settle_expired_logged(self) -> None:
        try:
            settled = await self.settle_expired()
        except PanelError as error:
            log.warning("expired promised payments were not taken back: %s", error)
            return
        if settled:
            log.info("took back %d expired promised payments", settled)
