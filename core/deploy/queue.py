"""The worker side of the deployments queue: claim with a lease, renew it, finish.

A worker claims a queued deployment whose project has nothing in progress with
`FOR UPDATE SKIP LOCKED`, so workers never take the same job. Claims are fair between users:
the job claimed is the oldest of the users with the fewest jobs in progress, and no user has
more than `per_user` jobs in progress at once (claims take a short advisory lock, so that cap
holds across workers), so one tenant queueing many projects cannot starve the others. While it
works it renews a lease; a worker that dies stops renewing, and `reap_expired` (run by every
worker) fails the job once the lease is over, so nothing stays "building" forever.
Every write is conditional on the worker still holding the job: a worker whose lease was
reaped cannot overwrite what happened since.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.db.pool import Pool, connection
from core.deploy.service import (
    DEPLOYMENT_SELECT,
    SUCCEEDED_STATES,
    Deployment,
    Kind,
    row_to_deployment,
)

# A build log is kept whole up to this many bytes (GHST_BUILD_LOG_MAX_BYTES); beyond, it is cut
# there and ends with a notice.
MAX_LOG_BYTES = 2_000_000
LOG_TRUNCATED = "\n[the log is longer than the panel keeps: the rest was not kept]\n"
CLAIM_LOCK = 0x67687374_636C616D  # pg_advisory_xact_lock key of claims ("ghstclam")
WORKER_DIED = "The worker running this deployment stopped before it finished (its lease expired)."


class LeaseLost(Exception):
    """The job was taken away from this worker (lease expired and reaped, or project deleted)."""


@dataclass(frozen=True)
class Renewal:
    cancel_requested: bool


class DeploymentQueue:
    def __init__(
        self,
        pool: Pool,
        lease_seconds: float,
        log_max_bytes: int = MAX_LOG_BYTES,
        per_user: int = 1,
    ) -> None:
        self._pool = pool
        self._lease = lease_seconds
        self._per_user = max(1, per_user)
        self.log_max_bytes = max(log_max_bytes, 2 * len(LOG_TRUNCATED))

    async def claim(self, worker: str) -> Deployment | None:
        async with connection(self._pool) as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
                    row = await conn.fetchrow(
                        "WITH active AS (SELECT user_id, count(*) AS jobs FROM deployments"
                        "  WHERE state IN ('building', 'starting') GROUP BY user_id),"
                        " next AS ("
                        " SELECT d.id FROM deployments d"
                        " LEFT JOIN active a ON a.user_id = d.user_id"
                        " WHERE d.state = 'queued' AND coalesce(a.jobs, 0) < $3"
                        " AND NOT EXISTS (SELECT 1 FROM deployments busy"
                        "  WHERE busy.project_id = d.project_id"
                        "  AND busy.state IN ('building', 'starting'))"
                        " ORDER BY coalesce(a.jobs, 0), d.id FOR UPDATE OF d SKIP LOCKED LIMIT 1)"
                        " UPDATE deployments SET state = 'building', worker = $1,"
                        " lease_expires_at = now() + make_interval(secs => $2),"
                        " started_at = now(), attempts = attempts + 1"
                        " FROM next WHERE deployments.id = next.id RETURNING deployments.id",
                        worker,
                        self._lease,
                        self._per_user,
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
        """Add `text` to the log, which never grows past `log_max_bytes` (notice included)."""
        async with connection(self._pool) as conn, conn.transaction():
            size = await conn.fetchval(
                "SELECT octet_length(log) FROM deployments WHERE id = $1 FOR UPDATE",
                deployment_id,
            )
            if size is None:
                return
            addition = _within(text, size, self.log_max_bytes)
            if addition:
                await conn.execute(
                    "UPDATE deployments SET log = log || $2 WHERE id = $1", deployment_id, addition
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
                " app_port = NULL, log = CASE WHEN octet_length(log) + octet_length($3) <= $4"
                " THEN log || $3 ELSE log END"
                " WHERE id = $1 AND worker = $2 AND state IN ('building', 'starting')"
                " AND NOT cancel_requested RETURNING id",
                deployment_id,
                worker,
                "\n[the panel was restarting: this deployment goes back to the queue]\n",
                self.log_max_bytes - len(LOG_TRUNCATED),
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

    async def prune_history(self, project_id: int, keep: int) -> int:
        """Delete the project's deployments (rows and logs) beyond the newest `keep`, except
        the live one, those in progress, those whose image is kept for a rollback, and those a
        kept deployment reuses the image of. Returns how many were deleted."""
        async with connection(self._pool) as conn:
            deleted = await conn.fetch(
                "DELETE FROM deployments d WHERE d.project_id = $1"
                " AND (d.state IN ('failed', 'cancelled')"
                "  OR (d.state = 'superseded' AND d.image IS NULL))"
                " AND d.id IS DISTINCT FROM"
                "  (SELECT live_deployment_id FROM projects WHERE id = $1)"
                " AND d.id NOT IN (SELECT id FROM deployments WHERE project_id = $1"
                "  ORDER BY id DESC LIMIT $2)"
                " AND NOT EXISTS (SELECT 1 FROM deployments other WHERE other.source_id = d.id"
                "  AND other.id <> d.id AND other.state NOT IN ('failed', 'cancelled'))"
                " RETURNING d.id",
                project_id,
                max(1, keep),
            )
        return len(deleted)

    async def forget_image(self, deployment_id: int) -> None:
        """The image was pruned: the deployment can no longer be rolled back to."""
        async with connection(self._pool) as conn:
            await conn.execute("UPDATE deployments SET image = NULL WHERE id = $1", deployment_id)


def _within(text: str, size: int, limit: int) -> str:
    """What of `text` may follow a log of `size` bytes so it stays within `limit` bytes: all of
    it, or a cut piece and the notice once, or nothing once the notice is there."""
    data = text.encode()
    notice = len(LOG_TRUNCATED.encode())
    # Room for the notice is always kept, so a log that is not cut yet can still say it is.
    if size + len(data) <= limit - notice:
        return text
    room = limit - notice - size
    if room < 0:  # cut already (the notice took the last bytes)
        return ""
    return data[:room].decode("utf-8", "ignore") + LOG_TRUNCATED
