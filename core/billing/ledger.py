"""The ledger and the balances it adds up to (this module owns both tables, so the one rule
that ties them, balance = sum of entries, is kept in one place: every entry and its balance
change are one statement).

Entries are append-only (a trigger refuses updates and deletes) and carry a unique
idempotency key: posting a key again returns the first entry and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import asyncpg

from core.actor import Actor
from core.audit import entries as audit
from core.db.pool import Connection
from core.errors import ConflictError

Kind = Literal["topup", "charge", "refund", "adjustment", "promised"]
ENTRY_COLUMNS = (
    "id, user_id, kind, amount, idempotency_key, actor, reason, project_id, day, created_at,"
    " plan_id"
)

# Adds the posted entries to their accounts' balances, in the statement that posts them. Rows
# are locked in account order, as every multi-account writer must, so two never deadlock.
_ADD_TO_BALANCES = """
, added AS (
    INSERT INTO balances AS b (user_id, kopecks)
    SELECT user_id, sum(amount) FROM posted GROUP BY user_id ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE
    SET kopecks = b.kopecks + EXCLUDED.kopecks, updated_at = now()
)
"""


@dataclass(frozen=True)
class Entry:
    id: int
    user_id: int
    kind: Kind
    amount: int
    idempotency_key: str
    actor: str
    reason: str
    project_id: int | None
    day: date | None
    created_at: datetime
    plan_id: int | None = None  # the plan version a charge paid for


@dataclass(frozen=True)
class NewEntry:
    user_id: int
    kind: Kind
    amount: int
    idempotency_key: str
    actor: str
    reason: str = ""
    project_id: int | None = None
    day: date | None = None
    plan_id: int | None = None


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(**dict(row))


async def post(conn: Connection, new: NewEntry, *, by: Actor | None = None) -> tuple[Entry, bool]:
    """Append `new` and add it to the balance; (the entry, True). A key posted before:
    (that first entry, False), nothing changed. Concurrent posts of one key: one wins, the
    other waits for its commit and gets its entry."""
    row = await conn.fetchrow(
        "WITH posted AS ("
        " INSERT INTO ledger (user_id, kind, amount, idempotency_key, actor, reason, project_id,"
        " day, plan_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" ON CONFLICT (idempotency_key) DO NOTHING RETURNING {ENTRY_COLUMNS})"
        f"{_ADD_TO_BALANCES} SELECT * FROM posted",
        new.user_id, new.kind, new.amount, new.idempotency_key, new.actor, new.reason,
        new.project_id, new.day, new.plan_id,
    )  # fmt: skip
    if row is not None:
        entry = _entry(row)
        await _audit(conn, entry, by or Actor("system", None, new.actor))
        return entry, True
    first = await by_key(conn, new.idempotency_key)
    assert first is not None, "the conflicting entry is committed before ON CONFLICT gives up"
    if (first.user_id, first.kind, first.amount) != (new.user_id, new.kind, new.amount):
        raise ConflictError("This operation was already recorded with other details.")
    return first, False


async def _audit(conn: Connection, entry: Entry, by: Actor) -> None:
    """The audit entry of a balance change (`by`: who made it; else the entry's label)."""
    after = await balance(conn, entry.user_id)
    await audit.record(
        conn,
        by,
        f"balance.{entry.kind}",
        audit.Target("account", None, entry.user_id, entry.user_id),
        metadata={
            "entry": entry.id,
            "amount": entry.amount,
            "from": after - entry.amount,
            "to": after,
            "reason": entry.reason,
            "project_id": entry.project_id,
        },
    )


async def post_selected(conn: Connection, source: str, *args: object) -> int:
    """Append every row `source` selects (columns user_id, kind, amount, idempotency_key,
    actor, reason, project_id, day, plan_id) and add them to their balances, in one statement;
    rows whose key is already posted are skipped. How many were posted."""
    posted = await conn.fetchval(
        "WITH posted AS ("
        " INSERT INTO ledger (user_id, kind, amount, idempotency_key, actor, reason, project_id,"
        f" day, plan_id) {source}"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING user_id, amount)"
        f"{_ADD_TO_BALANCES} SELECT count(*) FROM posted",
        *args,
    )
    return int(posted)


async def by_key(conn: Connection, key: str) -> Entry | None:
    row = await conn.fetchrow(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE idempotency_key = $1", key)
    return _entry(row) if row else None


async def balance(conn: Connection, user_id: int) -> int:
    """The kept balance (0 for an account with no entries)."""
    kept = await conn.fetchval("SELECT kopecks FROM balances WHERE user_id = $1", user_id)
    return int(kept or 0)


async def rebuilt_balance(conn: Connection, user_id: int) -> int:
    """The balance summed from the ledger itself (what `balance` must always equal)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM ledger WHERE user_id = $1", user_id
    )
    return int(total)


async def restore_balance(conn: Connection, user_id: int) -> int:
    """Set the kept balance to the ledger's sum (after a restore from backup, say)."""
    total = await rebuilt_balance(conn, user_id)
    await conn.execute(
        "INSERT INTO balances AS b (user_id, kopecks) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET kopecks = EXCLUDED.kopecks, updated_at = now()",
        user_id,
        total,
    )
    return total


async def entries(
    conn: Connection, user_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[Entry]:
    """The account's entries, newest first."""
    rows = await conn.fetch(
        f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE user_id = $1"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        user_id,
        before_id,
        limit,
    )
    return [_entry(row) for row in rows]


async def lock_balance(conn: Connection, user_id: int) -> None:
    """Hold the account's balance row until the transaction ends (made if missing)."""
    await conn.execute(
        "INSERT INTO balances (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING", user_id
    )
    await conn.execute("SELECT 1 FROM balances WHERE user_id = $1 FOR UPDATE", user_id)


async def lock_existing_balance(conn: Connection, user_id: int) -> None:
    """Hold the account's balance row, if it has one, until the transaction ends: what a credit
    holds. Made if missing would put a zero balance (so the account) in arrears."""
    await conn.execute("SELECT 1 FROM balances WHERE user_id = $1 FOR UPDATE", user_id)


async def matching(conn: Connection, where: str, *args: object) -> list[Entry]:
    """Entries meeting `where` (a condition on the ledger's columns, written by the module that
    owns any other table it names, as invoices name their billed entries), oldest first."""
    rows = await conn.fetch(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE {where} ORDER BY id", *args)
    return [_entry(row) for row in rows]


async def accounts_matching(conn: Connection, where: str, *args: object) -> list[int]:
    """The accounts with an entry meeting `where` (as for `matching`), in account order."""
    rows = await conn.fetch(
        f"SELECT DISTINCT user_id FROM ledger WHERE {where} ORDER BY user_id", *args
    )
    return [row["user_id"] for row in rows]
