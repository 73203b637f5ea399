"""The audit log's service: what front ends list, what other services call to record a
refused attempt, and retention (export, then prune), run by the workers as a daily chore.

A change's own entry is written with `entries.record(conn, ...)` inside that change's
transaction; this service is for everything that has no such transaction.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from core.actor import Actor
from core.audit import entries
from core.audit.entries import AuditEvent, Outcome, Target
from core.db.pool import Pool
from core.db.unit import reading, transaction
from core.errors import NotFoundError, PermissionDenied, SuspendedError

log = logging.getLogger(__name__)

PAGE_MAX = 200
EXPORT_BATCH = 5000
# Refused or failed entries kept per actor (or, with no account, per address) and hour; an
# identical attempt within a minute is written once. Beyond, they are only logged: a hostile
# client cannot fill the disk with them.
UNHAPPY_PER_HOUR = 60
# The errors that mean "you may not", recorded as refused. Another tenant's row reads as not
# found, so a not-found on a write is one too (recorded for the actor only: no owner, no id).
REFUSALS = (PermissionDenied, SuspendedError, NotFoundError)


class AuditService:
    def __init__(
        self,
        pool: Pool,
        *,
        export_dir: Path,
        retention_days: int = 365,
    ) -> None:
        self._pool = pool
        self._export_dir = export_dir
        self._retention = timedelta(days=retention_days)

    async def list(
        self,
        actor: Actor,
        *,
        before_id: int | None = None,
        limit: int = 50,
        since: datetime | None = None,
        action: str | None = None,
        project: str | None = None,
        everyone: bool = False,
    ) -> list[AuditEvent]:
        """Entries newest first, older than `before_id` (pass the last one's id for the next
        page). A user (or token, which needs `read`) sees what they did and what was done to
        their data; an operator asking for `everyone` sees every entry."""
        actor.require("read")
        if project is not None:
            actor.require_project(project)
        elif actor.projects is not None:
            # A token limited to some projects reads their entries only, one at a time.
            raise PermissionDenied(f"{actor.label} must name one of its projects.")
        if everyone and not actor.is_operator:
            raise PermissionDenied("Only an administrator may read everyone's audit log.")
        viewer = None if everyone else actor.owner_id
        async with reading(self._pool) as conn:
            return await entries.page(
                conn,
                viewer_id=viewer,
                before_id=before_id,
                limit=max(1, min(limit, PAGE_MAX)),
                since=since,
                action=action,
                project=project,
            )

    async def record(
        self,
        actor: Actor,
        action: str,
        target: Target | None = None,
        outcome: Outcome = "ok",
        metadata: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Record an event that has no transaction of its own to join (a token made or
        revoked elsewhere uses `entries.record` on its connection instead). Refused and failed
        ones are capped; returns the entry's id, None when the cap dropped it. A viewer
        (an admin viewing as a user) writes nothing this way."""
        actor.require_change()
        return await record_alone(self._pool, actor, action, target, outcome, metadata)

    # -- retention ------------------------------------------------------------------------------

    async def retain(self, now: datetime | None = None) -> int:
        """Export the entries older than the retention period to a JSON-lines file, then delete
        them; returns how many. Each batch is written and flushed to disk before the rows go."""
        cutoff = (now or datetime.now(UTC)) - self._retention
        pruned = 0
        path = self._export_dir / f"audit-{cutoff:%Y%m%dT%H%M%S}.jsonl"
        while True:
            async with transaction(self._pool) as conn:
                # One pruner at a time: two would export the same rows twice.
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(hashtext('ghst-audit-retention'))"
                ):
                    return pruned
                batch = await entries.older_than(conn, cutoff, EXPORT_BATCH)
                if not batch:
                    return pruned
                await asyncio.to_thread(_append, path, batch)
                pruned += await entries.prune(conn, batch[-1].id, cutoff)

    async def retain_logged(self) -> None:
        """The workers' chore: retention, its failures logged (the next run tries again)."""
        try:
            pruned = await self.retain()
        except Exception:
            log.exception("audit retention failed")
            return
        if pruned:
            log.info("audit retention: exported and pruned %d entries", pruned)


async def record_alone(
    pool: Pool,
    actor: Actor,
    action: str,
    target: Target | None = None,
    outcome: Outcome = "ok",
    metadata: Mapping[str, Any] | None = None,
) -> int | None:
    """An entry in a short transaction of its own; refused and failed ones capped."""
    async with transaction(pool) as conn:
        if outcome == "ok":
            return await entries.record(conn, actor, action, target, outcome, metadata)
        return await entries.record_unhappy(
            conn, actor, action, target, outcome, metadata, per_hour=UNHAPPY_PER_HOUR
        )


async def refused(
    pool: Pool, actor: Actor, action: str, target: Target | None, error: BaseException
) -> None:
    """Record a refused attempt; never raises (the refusal is what the caller reports)."""
    details = {"reason": type(error).__name__}
    if isinstance(error, NotFoundError) and target is not None:
        # As the actor named it: another tenant's id or owner must not show.
        target = Target(target.kind, target.name)
    try:
        await record_alone(pool, actor, action, target, "refused", details)
    except Exception as failure:
        log.warning("could not record a refused %s by %s: %s", action, actor.label, failure)


@asynccontextmanager
async def refusals(
    pool: Pool, actor: Actor, action: str, target: Target | None = None
) -> AsyncIterator[None]:
    """Around an operation: a refusal raised inside is recorded (in its own transaction: the
    operation's rolls back) and raised on."""
    try:
        yield
    except REFUSALS as error:
        await refused(pool, actor, action, target, error)
        raise


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def records_refusals(
    action: str, kind: str = "project"
) -> Callable[
    [Callable[Concatenate[S, Actor, P], Awaitable[R]]],
    Callable[Concatenate[S, Actor, P], Awaitable[R]],
]:
    """A service method `(self, actor, name, ...)` whose refusals are recorded as `action` on
    the target `kind` named by its first argument after the actor. The service has `_pool`."""

    def decorate(
        method: Callable[Concatenate[S, Actor, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, Actor, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(service: S, actor: Actor, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(service, actor, *args, **kwargs)
            except REFUSALS as error:
                name = args[0] if args and isinstance(args[0], str) else None
                pool: Pool = getattr(service, "_pool")  # noqa: B009 - every service keeps one
                await refused(pool, actor, action, Target(kind, name), error)
                raise

        return wrapper

    return decorate


def records_gate_refusals(
    action: str, gate: Callable[[Actor], None], kind: str | None = None
) -> Callable[
    [Callable[Concatenate[S, Actor, P], Awaitable[R]]],
    Callable[Concatenate[S, Actor, P], Awaitable[R]],
]:
    """A service method `(self, actor, ...)` that `gate(actor)` must admit first (it raises
    PermissionDenied). A refusal there is recorded as `action`, capped like every refusal, on
    the target `kind` named by the first argument (when it is a string), and raised on. What
    the method raises past the gate is its own business: an admin's typo is no refusal."""

    def decorate(
        method: Callable[Concatenate[S, Actor, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, Actor, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(service: S, actor: Actor, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                gate(actor)
            except PermissionDenied as error:
                name = args[0] if kind is not None and args and isinstance(args[0], str) else None
                target = Target(kind, name) if kind is not None else None
                pool: Pool = getattr(service, "_pool")  # noqa: B009 - every service keeps one
                await refused(pool, actor, action, target, error)
                raise
            return await method(service, actor, *args, **kwargs)

        return wrapper

    return decorate


def _append(path: Path, batch: list[AuditEvent]) -> None:
    """Append the entries to the export file (blocking: run in a thread), synced to disk."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a", encoding="utf-8") as export:
        for event in batch:
            export.write(json.dumps(event.as_json(), ensure_ascii=False) + "\n")
        export.flush()
        os.fsync(export.fileno())
