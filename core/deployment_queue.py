"""The worker side of the deployments queue: claim with a lease, renew it, finish.

A worker claims the oldest queued deployment whose project has nothing in progress with
`FOR UPDATE SKIP LOCKED`, so workers never wait on each other nor take the same job. While it
works it renews a lease; a worker that dies stops renewing, and `reap_expired` (run by every
worker) fails the job once the lease is over, so nothing stays "building" forever.
Every write is conditional on the worker still holding the job: a worker whose lease was
reaped cannot overwrite what happened since.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.db import Pool, connection
from core.deployments import (
    DEPLOYMENT_SELECT,
    SUCCEEDED_STATES,
    Deployment,
    Kind,
    row_to_deployment,
)

# A build log is kept whole up to this many characters; beyond, only a notice is added.
MAX_LOG_CHARS = 2_000_000
LOG_TRUNCATED = "\n[the log is longer than 2 MB: the rest was not kept]\n"
WORKER_DIED = "The worker running this deployment stopped before it finished (its lease expired)."


class LeaseLost(Exception):
    """The job was taken away from this worker (lease expired and reaped, or project deleted)."""


@dataclass(frozen=True)
class Renewal:
    cancel_requested: bool


class DeploymentQueue:
    def __init__(self, pool: Pool, lease_seconds: float) -> None:
        self._pool = pool
        self._lease = lease_seconds

    async def claim(self, worker: str) -> Deployment | None:
        async with connection(self._pool) as conn:
            try:
                row = await conn.fetchrow(
                    "WITH next AS ("
                    " SELECT d.id FROM deployments d WHERE d.state = 'queued'"
                    " AND NOT EXISTS (SELECT 1 FROM deployments busy"
                    "  WHERE busy.project_id = d.project_id"
                    "  AND busy.state IN ('building', 'starting'))"
                    " ORDER BY d.id FOR UPDATE SKIP LOCKED LIMIT 1)"
                    " UPDATE deployments SET state = 'building', worker = $1,"
                    " lease_expires_at = now() + make_interval(secs => $2),"
                    " started_at = now(), attempts = attempts + 1"
                    " FROM next WHERE deployments.id = next.id RETURNING deployments.id",
                    worker,
                    self._lease,
                )
            except asyncpg.UniqueViolationError:
                # Another worker started a job of the same project a moment ago.
                return None
            if row is None:
                return None
            found = await conn.fetchrow(DEPLOYMENT_SELECT + " WHERE d.id = $1", row["id"])
        return row_to_deployment(found) if found else None

    async def renew(self, deployment_id: int, worker: str) -> Renewal:
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE deployments SET lease_expires_at = now() + make_interval(secs => $3)"
                " WHERE id = $1 AND worker = $2 AND state IN ('building', 'starting')"
                " RETURNING cancel_requested",
                deployment_id,
                worker,
                self._lease,
            )
        if row is None:
            raise LeaseLost(deployment_id)
        return Renewal(bool(row["cancel_requested"]))

    async def append_log(self, deployment_id: int, text: str) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE deployments SET log = CASE"
                " WHEN length(log) < $3 THEN log || $2"
                " WHEN right(log, length($4)) = $4 THEN log ELSE log || $4 END"
                " WHERE id = $1",
                deployment_id,
                text,
                MAX_LOG_CHARS,
                LOG_TRUNCATED,
            )

    async def record(
        self,
        deployment_id: int,
        worker: str,
        *,
        kind: Kind | None = None,
        image: str | None = None,
        stack: str | None = None,
        port: int | None = None,
        app_port: int | None = None,
        state: str | None = None,
    ) -> None:
        """Note what the job made so far (each field only when given)."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE deployments SET kind = coalesce($3, kind), image = coalesce($4, image),"
                " stack = coalesce($5, stack), port = coalesce($6, port),"
                " app_port = coalesce($7, app_port), state = coalesce($8, state)"
                " WHERE id = $1 AND worker = $2 AND state IN ('building', 'starting')"
                " RETURNING id",
                deployment_id,
                worker,
                kind,
                image,
                stack,
                port,
                app_port,
                state,
            )
        if row is None:
            raise LeaseLost(deployment_id)

    async def go_live(self, deployment_id: int, worker: str) -> Deployment | None:
        """Make the deployment the project's live one; return the one it replaces, if any."""
        async with connection(self._pool) as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE deployments SET state = 'running', finished_at = now(),"
                " lease_expires_at = NULL WHERE id = $1 AND worker = $2"
                " AND state IN ('building', 'starting') RETURNING project_id",
                deployment_id,
                worker,
            )
            if row is None:
                raise LeaseLost(deployment_id)
            previous = await conn.fetchrow(
                DEPLOYMENT_SELECT + " WHERE d.id = (SELECT live_deployment_id FROM projects"
                " WHERE id = $1 FOR UPDATE)",
                row["project_id"],
            )
            await conn.execute(
                "UPDATE projects SET live_deployment_id = $2, stopped = false WHERE id = $1",
                row["project_id"],
                deployment_id,
            )
            if previous is not None:
                await conn.execute(
                    "UPDATE deployments SET state = 'superseded' WHERE id = $1 AND state = 'running'",
                    previous["id"],
                )
        return row_to_deployment(previous) if previous else None

    async def went_live(self, deployment_id: int, worker: str) -> bool:
        """Did `worker` take this job live? (Its lease ends there, so renewing it fails.)"""
        async with connection(self._pool) as conn:
            state = await conn.fetchval(
                "SELECT state FROM deployments WHERE id = $1 AND worker = $2",
                deployment_id,
                worker,
            )
        return state in SUCCEEDED_STATES

    async def finish(self, deployment_id: int, worker: str, state: str, error: str) -> bool:
        """End a job that did not go live (failed or cancelled); False if it was not ours."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE deployments SET state = $3, error = $4, finished_at = now(),"
                " lease_expires_at = NULL WHERE id = $1 AND worker = $2"
                " AND state IN ('building', 'starting') RETURNING id",
                deployment_id,
                worker,
                state,
                error,
            )
        return row is not None

    async def requeue(self, deployment_id: int, worker: str) -> bool:
        """Give a job back (the worker is shutting down): another worker starts it afresh."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE deployments SET state = 'queued', worker = NULL, lease_expires_at = NULL,"
                " started_at = NULL, kind = NULL, image = NULL, stack = NULL, port = NULL,"
                " app_port = NULL, log = log || $3"
                " WHERE id = $1 AND worker = $2 AND state IN ('building', 'starting')"
                " AND NOT cancel_requested RETURNING id",
                deployment_id,
                worker,
                "\n[the panel was restarting: this deployment goes back to the queue]\n",
            )
        return row is not None

    async def reap_expired(self) -> list[Deployment]:
        """Fail jobs whose worker stopped renewing; the caller cleans up what they left."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "UPDATE deployments SET state = 'failed', error = $1, finished_at = now()"
                " WHERE state IN ('building', 'starting') AND lease_expires_at < now()"
                " RETURNING id",
                WORKER_DIED,
            )
            found = await conn.fetch(
                DEPLOYMENT_SELECT + " WHERE d.id = any($1::bigint[])", [row["id"] for row in rows]
            )
        return [row_to_deployment(row) for row in found]

    async def forget_image(self, deployment_id: int) -> None:
        """The image was pruned: the deployment can no longer be rolled back to."""
        async with connection(self._pool) as conn:
            await conn.execute("UPDATE deployments SET image = NULL WHERE id = $1", deployment_id)
