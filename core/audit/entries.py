"""The `audit_events` table (its owner): writing an entry, reading a page, pruning old ones.

An entry is written on the caller's connection, inside the transaction of the change it
describes: the change and its entry commit or vanish together. Refused and failed attempts
have no change to ride on (their transaction rolls back), so they are written in a short
transaction of their own, capped per actor (or per address) and hour.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from core.actor import Actor
from core.db.pool import Connection

Outcome = Literal["ok", "refused", "failed"]
# Text a client chose (a project name, a username it tried) is cut to this many characters.
MAX_TEXT = 128
# An identical refused attempt (same actor, action, target and address) within this many
# seconds is written once.
SAME_ATTEMPT_SECONDS = 60


@dataclass(frozen=True)
class Target:
    """What an action touched: a kind ("project", "key", "account"...), its name as the user
    knows it, its id, and the account whose data it is (that account sees the entry)."""

    kind: str
    name: str | None = None
    id: int | None = None
    owner_id: int | None = None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor_kind: str
    actor_user_id: int | None
    actor_label: str
    token_id: int | None
    origin: str
    action: str
    target_kind: str | None
    target_id: int | None
    target_name: str | None
    owner_id: int | None
    outcome: Outcome
    source_address: str | None
    request_id: str | None
    metadata: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The entry as plain JSON values (the export and the command's `--json`)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": {
                "kind": self.actor_kind,
                "user_id": self.actor_user_id,
                "label": self.actor_label,
                "token_id": self.token_id,
            },
            "origin": self.origin,
            "action": self.action,
            "target": {
                "kind": self.target_kind,
                "id": self.target_id,
                "name": self.target_name,
                "owner_id": self.owner_id,
            },
            "outcome": self.outcome,
            "source_address": self.source_address,
            "request_id": self.request_id,
            "metadata": self.metadata,
        }


COLUMNS = (
    "id, at, actor_kind, actor_user_id, actor_label, token_id, origin, action, target_kind,"
    " target_id, target_name, owner_id, outcome, source_address, request_id, metadata"
)


def _row(row: asyncpg.Record) -> AuditEvent:
    values = dict(row)
    values["metadata"] = json.loads(values["metadata"])
    return AuditEvent(**values)


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


async def record(
    conn: Connection,
    actor: Actor,
    action: str,
    target: Target | None = None,
    outcome: Outcome = "ok",
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Write one entry on `conn` (in its transaction); returns its id."""
    target = target or Target("none")
    owner_id = target.owner_id
    entry_id: int = await conn.fetchval(
        "INSERT INTO audit_events (actor_kind, actor_user_id, actor_label, token_id, origin,"
        " action, target_kind, target_id, target_name, owner_id, outcome, source_address,"
        " request_id, metadata)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)"
        " RETURNING id",
        actor.recorded_kind,
        actor.user_id,
        _cut(actor.label),
        actor.token_id,
        actor.origin,
        action,
        target.kind,
        target.id,
        _cut(target.name),
        owner_id,
        outcome,
        _cut(actor.source_address),
        _cut(actor.request_id),
        json.dumps(dict(metadata or {}), default=str),
    )
    return entry_id


async def record_unhappy(
    conn: Connection,
    actor: Actor,
    action: str,
    target: Target | None,
    outcome: Outcome,
    metadata: Mapping[str, Any] | None,
    *,
    per_hour: int,
) -> int | None:
    """Write a refused or failed attempt unless its actor (or, with no account, its address)
    is over `per_hour` such entries, or wrote the same attempt moments ago. Run in a
    transaction: the count and the insert are serialized per actor."""
    who = f"user:{actor.user_id}" if actor.user_id is not None else f"addr:{actor.source_address}"
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ghst-audit'), hashtext($1))", who)
    key: object
    if actor.user_id is not None:
        where, key = "actor_user_id = $1", actor.user_id
    else:
        where, key = "actor_user_id IS NULL AND source_address = $1", actor.source_address
    seen = await conn.fetchrow(
        f"SELECT count(*) AS hour, count(*) FILTER (WHERE action = $2"
        f" AND target_name IS NOT DISTINCT FROM $3 AND source_address IS NOT DISTINCT FROM $5"
        f" AND at > clock_timestamp() - make_interval(secs => $4)) AS same"
        f" FROM audit_events WHERE {where} AND outcome <> 'ok'"
        f" AND at > clock_timestamp() - interval '1 hour'",
        key,
        action,
        _cut(target.name if target else None),
        SAME_ATTEMPT_SECONDS,
        _cut(actor.source_address),
    )
    assert seen is not None  # an aggregate always yields a row
    if seen["hour"] >= per_hour or seen["same"] > 0:
        return None
    return await record(conn, actor, action, target, outcome, metadata)


async def page(
    conn: Connection,
    *,
    viewer_id: int | None,
    before_id: int | None,
    limit: int,
    since: datetime | None = None,
    action: str | None = None,
    project: str | None = None,
) -> list[AuditEvent]:
    """Entries newest first, older than `before_id` (keyset paging). `viewer_id`: the account
    whose own entries (as actor or as owner) are listed; None lists every entry."""
    filters = (
        " AND ($2::bigint IS NULL OR id < $2)"
        " AND ($3::timestamptz IS NULL OR at >= $3)"
        " AND ($4::text IS NULL OR action = $4 OR action LIKE $4 || '.%')"
        " AND ($5::text IS NULL OR (target_kind = 'project' AND target_name = $5)"
        "      OR metadata->>'project' = $5)"
    )
    args: Sequence[object] = (before_id, since, action, project, limit)
    if viewer_id is None:
        sql = f"SELECT {COLUMNS} FROM audit_events WHERE $1::bigint IS NULL{filters}"
    else:
        # Two index scans, merged: what the viewer did, and what was done to their data.
        sql = (
            f"SELECT {COLUMNS} FROM ("
            f"(SELECT * FROM audit_events WHERE actor_user_id = $1{filters} ORDER BY id DESC"
            f" LIMIT $6) UNION"
            f" (SELECT * FROM audit_events WHERE owner_id = $1{filters} ORDER BY id DESC"
            f" LIMIT $6)) AS mine"
        )
    rows = await conn.fetch(f"{sql} ORDER BY id DESC LIMIT $6", viewer_id, *args)
    return [_row(row) for row in rows]


@dataclass(frozen=True)
class AuditFilter:
    """What the admin app's `:audit` view narrows to; every field is optional. `actor_id`
    matches the acting account (its own actions and its tokens'), `actor_label` the label as
    recorded (an account that no longer exists, "system:..."); `text` is the first letters of
    an action, a target's name or an actor's label."""

    actor_id: int | None = None
    actor_label: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    text: str = ""


def _prefix(text: str) -> str:
    """A LIKE pattern for text's first letters, its own wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(
    conn: Connection, found: AuditFilter, *, before_id: int | None, limit: int
) -> list[AuditEvent]:
    """Every account's entries matching `found`, newest first, older than `before_id`
    (keyset paging on the primary key; each field filter has an index that starts with it,
    migrations 0016 and 0019)."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM audit_events"
        " WHERE ($1::bigint IS NULL OR id < $1)"
        " AND ($2::bigint IS NULL OR actor_user_id = $2)"
        " AND ($3::text IS NULL OR actor_label = $3)"
        " AND ($4::text IS NULL OR action = $4 OR action LIKE $4 || '.%')"
        " AND ($5::text IS NULL OR target_name = $5)"
        " AND ($6::text IS NULL OR outcome = $6)"
        " AND ($7::timestamptz IS NULL OR at >= $7)"
        " AND ($8::text IS NULL OR action LIKE $8 OR target_name LIKE $8"
        "      OR actor_label LIKE $8)"
        " ORDER BY id DESC LIMIT $9",
        before_id,
        found.actor_id,
        found.actor_label,
        found.action,
        found.target,
        found.outcome,
        found.since,
        _prefix(found.text) if found.text else None,
        limit,
    )
    return [_row(row) for row in rows]


async def older_than(conn: Connection, cutoff: datetime, limit: int) -> list[AuditEvent]:
    """The oldest entries written before `cutoff`, oldest first (what retention exports)."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2", cutoff, limit
    )
    return [_row(row) for row in rows]


async def prune(conn: Connection, up_to_id: int, cutoff: datetime) -> int:
    """Delete the entries before `cutoff` up to `up_to_id` (already exported). Only this may
    delete: the setting that lets the trigger pass lasts until the transaction ends."""
    await conn.execute("SET LOCAL ghst.audit_retention = 'on'")
    status = await conn.execute(
        "DELETE FROM audit_events WHERE id <= $1 AND at < $2", up_to_id, cutoff
    )
    await conn.execute("SET LOCAL ghst.audit_retention = 'off'")
    return int(status.split()[-1])
