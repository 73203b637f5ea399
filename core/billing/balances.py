"""What an account has and what changed it: users read their own; only operators adjust."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from core.actor import Actor
from core.audit import entries as audit
from core.billing import ledger
from core.billing.ledger import Entry, NewEntry
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import PermissionDenied, ValidationError

MAX_REASON = 500
# What a credit runs in the transaction that posts it (the resume of suspended projects).
CreditHook = Callable[[Connection, int], Awaitable[object]]


def checked_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ValidationError("Say why (a reason is kept with the entry).")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"A reason is at most {MAX_REASON} characters.")
    return reason


class BalanceService:
    def __init__(self, pool: Pool, *, after_credit: CreditHook | None = None) -> None:
        self._pool = pool
        self._after_credit = after_credit

    async def balance(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> int:
        """The account's balance in kopecks (another tenant's reads as not found)."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            return await ledger.balance(db, user_id)

    async def history(
        self,
        actor: Actor,
        *,
        owner_id: int | None = None,
        limit: int = 50,
        before_id: int | None = None,
        conn: Connection | None = None,
    ) -> list[Entry]:
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            return await ledger.entries(db, user_id, limit=min(limit, 500), before_id=before_id)

    async def adjust(
        self,
        actor: Actor,
        user_id: int,
        amount: int,
        reason: str,
        *,
        key: str | None = None,
        conn: Connection | None = None,
    ) -> Entry:
        """An operator's correction, up or down. `key` makes a retried command land once."""
        actor.require_change()
        if actor.kind not in ("admin", "system"):
            raise PermissionDenied("Only an administrator can adjust a balance.")
        if amount == 0:
            raise ValidationError("An adjustment of zero changes nothing.")
        new = NewEntry(
            user_id,
            "adjustment",
            amount,
            f"adjustment:{key or uuid.uuid4()}",
            actor.label,
            checked_reason(reason),
        )
        async with transaction(self._pool, conn) as tx:
            entry, posted = await ledger.post(tx, new, by=actor)
            if posted:
                # A retried command (same key) posts once and is recorded once.
                await audit.record(
                    tx,
                    actor,
                    "balance.adjust",
                    audit.Target("account", None, user_id, user_id),
                    metadata={"amount_kopecks": amount, "reason": new.reason, "entry": entry.id},
                )
            if posted and amount > 0 and self._after_credit is not None:
                await self._after_credit(tx, user_id)
        return entry

    async def check(self, actor: Actor, user_id: int) -> tuple[int, int]:
        """(kept balance, balance rebuilt from the ledger): an operator's consistency check."""
        if not actor.is_operator:
            raise PermissionDenied("Only an operator can check balances.")
        async with reading(self._pool) as db, db.transaction(isolation="repeatable_read"):
            return await ledger.balance(db, user_id), await ledger.rebuilt_balance(db, user_id)
