"""The one owner of the `deployments` table: every SQL statement on it is here.

The queue, the worker, the pipeline, the live check and the service call these functions; none
of them writes SQL. States are parameters taken from `core.deploy.model`, and a write that
changes a state only moves rows from the states the model allows (`sources_of`). Every function
takes an optional connection, so a caller's transaction (and another domain's writes in it)
can include it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from core.db.pool import Connection, Pool, connection
from core.deploy.model import (
    ENDED_STATES,
    HOLDING_STATES,
    IN_PROGRESS_STATES,
    Deployment,
    Kind,
    Operation,
    Reason,
    State,
    sources_of,
    values,
)

NOTIFY_CHANNEL = "ghst_deployments"
CLAIM_LOCK = 0x67687374_636C616D  # pg_advisory_xact_lock key of claims ("ghstclam")
COLUMNS = (
    "id, project_id, project_name, user_id, archive_id, archive_name, reason, source_id, kind,"
    " state, error, image, stack, port, app_port, created_at, started_at, finished_at,"
    " missing_since, operation"
)
SELECT = f"SELECT {COLUMNS} FROM deployments"


def to_deployment(row: asyncpg.Record) -> Deployment:
    return Deployment(
        id=row["id"],
        project_id=row["project_id"],
        project=row["project_name"],
        user_id=row["user_id"],
        archive_id=row["archive_id"],
        archive_name=row["archive_name"],
        reason=cast(Reason, row["reason"]),
        source_id=row["source_id"],
        kind=cast(Kind | None, row["kind"]),
        state=State(row["state"]),
        error=row["error"],
        image=row["image"],
        stack=row["stack"],
        port=row["port"],
        app_port=row["app_port"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        missing_since=row["missing_since"],
        operation=Operation(row["operation"]),
    )


async def projects_deploying(conn: Connection) -> list[int]:
    """The projects with a deploy under way (queued to working): few, read from the partial
    index of active deployments (0017). For the admin app's `state:deploying` filter."""
    rows = await conn.fetch(
        "SELECT DISTINCT project_id FROM deployments"
        " WHERE state IN ('queued', 'building', 'starting', 'working') AND operation = 'deploy'"
    )
    return [row["project_id"] for row in rows]


@asynccontextmanager
async def _using(pool: Pool, conn: Connection | None) -> AsyncIterator[Connection]:
    """The caller's connection, or one from the pool."""
    if conn is not None:
        yield conn
        return
    async with connection(pool) as own:
        yield own


class DeploymentStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> Pool:
        """For callers opening a transaction that joins these writes with another domain's."""
        return self._pool

    # --- reading ------------------------------------------------------------------------------

    async def get(self, deployment_id: int, conn: Connection | None = None) -> Deployment | None:
        async with _using(self._pool, conn) as db:
            row = await db.fetchrow(SELECT + " WHERE id = $1", deployment_id)
        return to_deployment(row) if row else None

    async def of_project(
        self, project_id: int, deployment_id: int, conn: Connection | None = None
    ) -> Deployment | None:
        async with _using(self._pool, conn) as db:
            row = await db.fetchrow(
                SELECT + " WHERE id = $1 AND project_id = $2", deployment_id, project_id
            )
        return to_deployment(row) if row else None

    async def many(self, ids: list[int], conn: Connection | None = None) -> list[Deployment]:
        async with _using(self._pool, conn) as db:
            rows = await db.fetch(SELECT + " WHERE id = any($1::bigint[]) ORDER BY id", ids)
        return [to_deployment(row) for row in rows]

    async def history(
        self, project_id: int, limit: int, conn: Connection | None = None
    ) -> list[Deployment]:
        """The project's deployments (operations left out), newest first."""
        async with _using(self._pool, conn) as db:
            rows = await db.fetch(
                SELECT + " WHERE project_id = $1 AND operation = $3 ORDER BY id DESC LIMIT $2",
                project_id,
                limit,
                Operation.DEPLOY,
            )
        return [to_deployment(row) for row in rows]

    async def latest_states(
        self, project_ids: list[int], conn: Connection | None = None
    ) -> dict[int, str]:
        """The state of each project's newest deployment (operations left out)."""
        async with _using(self._pool, conn) as db:
            rows = await db.fetch(
                "SELECT DISTINCT ON (project_id) project_id, state FROM deployments"
                " WHERE project_id = any($1::bigint[]) AND operation = $2"
                " ORDER BY project_id, id DESC",
                project_ids,
                Operation.DEPLOY,
            )
        return {row["project_id"]: row["state"] for row in rows}

    async def log_from(
        self, project_id: int, deployment_id: int, offset: int
    ) -> tuple[str, int] | None:
        async with _using(self._pool, None) as db:
            row = await db.fetchrow(
                "SELECT substr(log, $3 + 1) AS text, length(log) AS size FROM deployments"
                " WHERE id = $1 AND project_id = $2",
                deployment_id,
                project_id,
                max(0, offset),
            )
        return (row["text"], int(row["size"])) if row else None

    async def queue_depth(self) -> tuple[int, int]:
        """(queued, being worked on) across every worker: the admin app's system view."""
        async with _using(self._pool, None) as db:
            row = await db.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'queued') AS queued,"
                " count(*) FILTER (WHERE state = any($1::text[])) AS working"
                " FROM deployments WHERE state = any($2::text[])",
                [str(state) for state in IN_PROGRESS_STATES],
                [str(state) for state in (State.QUEUED, *IN_PROGRESS_STATES)],
            )
        assert row is not None
        return row["queued"], row["working"]

    async def any_of_project(self, project_id: int) -> bool:
        """Was anything ever queued for the project (and not pruned)?"""
        async with _using(self._pool, None) as db:
            found = await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM deployments WHERE project_id = $1)", project_id
            )
        return bool(found)

    async def in_progress(self, project_id: int, conn: Connection | None = None) -> int | None:
        """The project's job a worker holds now, if any."""
        async with _using(self._pool, conn) as db:
            found = await db.fetchval(
                "SELECT id FROM deployments WHERE project_id = $1 AND state = any($2::text[])"
                " LIMIT 1",
                project_id,
                values(IN_PROGRESS_STATES),
            )
        return int(found) if found is not None else None

    async def pending(self, project_id: int, conn: Connection | None = None) -> int | None:
        """A deployment of the project queued or in progress, if any."""
        async with _using(self._pool, conn) as db:
            found = await db.fetchval(
                "SELECT id FROM deployments WHERE project_id = $1 AND operation = $3"
                " AND state = any($2::text[]) LIMIT 1",
                project_id,
                values((State.QUEUED, *IN_PROGRESS_STATES)),
                Operation.DEPLOY,
            )
        return int(found) if found is not None else None

    async def state_of(self, deployment_id: int, worker: str) -> str | None:
        async with _using(self._pool, None) as db:
            state = await db.fetchval(
                "SELECT state FROM deployments WHERE id = $1 AND worker = $2",
                deployment_id,
                worker,
            )
        return cast(str | None, state)

    async def running(self, ids: list[int]) -> list[Deployment]:
        """Those of `ids` that are running (live deployments, for the lost-container check)."""
        async with _using(self._pool, None) as db:
            rows = await db.fetch(
                SELECT + " WHERE id = any($1::bigint[]) AND state = $2 ORDER BY id",
                ids,
                State.RUNNING,
            )
        return [to_deployment(row) for row in rows]

    async def kept_images(self, project_id: int, live_id: int | None) -> list[asyncpg.Record]:
        """(id, image) of the project's deployments that went live and keep an image, except
        the live one, newest first."""
        async with _using(self._pool, None) as db:
            return await db.fetch(
                "SELECT id, image FROM deployments WHERE project_id = $1 AND image IS NOT NULL"
                " AND state = any($3::text[]) AND id IS DISTINCT FROM $2 ORDER BY id DESC",
                project_id,
                live_id,
                sorted(values((State.RUNNING, State.SUPERSEDED))),
            )

    async def image_in_use(self, image: str, except_id: int) -> bool:
        """Does a deployment queued, in progress or running use this image?"""
        async with _using(self._pool, None) as db:
            used = await db.fetchval(
                "SELECT count(*) FROM deployments WHERE image = $1 AND id <> $2"
                " AND state = any($3::text[])",
                image,
                except_id,
                values(HOLDING_STATES),
            )
        return bool(used)

    async def image_recorded(self, image: str) -> bool:
        async with _using(self._pool, None) as db:
            return bool(
                await db.fetchval("SELECT count(*) FROM deployments WHERE image = $1", image)
            )

    async def to_keep(
        self, ids: list[int], live_ids: list[int], grace: float
    ) -> tuple[set[int], set[int]]:
        """Of `ids`, (those whose containers must stay, those this database knows): held,
        live, or ended (or whose project's live one ended) less than `grace` seconds ago."""
        async with _using(self._pool, None) as db:
            rows = await db.fetch(
                "SELECT d.id,"
                " d.state = any($4::text[]) OR d.id = any($3::bigint[])"
                "  OR greatest(d.finished_at, live.finished_at)"
                "     > now() - make_interval(secs => $2) AS keep"
                " FROM deployments d LEFT JOIN deployments live"
                "  ON live.project_id = d.project_id AND live.id = any($3::bigint[])"
                " WHERE d.id = any($1::bigint[])",
                ids,
                grace,
                live_ids,
                values(HOLDING_STATES),
            )
        return {row["id"] for row in rows if row["keep"]}, {row["id"] for row in rows}

    async def known(self, ids: list[int]) -> set[int]:
        async with _using(self._pool, None) as db:
            rows = await db.fetch("SELECT id FROM deployments WHERE id = any($1::bigint[])", ids)
        return {row["id"] for row in rows}

    async def made_up_to(
        self, last_id: int, conn: Connection | None = None
    ) -> list[tuple[int, str]]:
        """(id, project name) of the deployments up to `last_id` (installation adoption)."""
        async with _using(self._pool, conn) as db:
            rows = await db.fetch(
                "SELECT id, project_name FROM deployments WHERE id <= $1", last_id
            )
        return [(row["id"], row["project_name"]) for row in rows]

    # --- queueing -----------------------------------------------------------------------------

    async def insert(
        self,
        conn: Connection,
        *,
        project_id: int,
        project_name: str,
        user_id: int,
        archive_id: int | None,
        archive_name: str,
        reason: Reason = "deploy",
        source_id: int | None = None,
        operation: Operation = Operation.DEPLOY,
    ) -> Deployment:
        """Queue a job and wake the workers (when the caller's transaction commits)."""
        deployment_id = await conn.fetchval(
            "INSERT INTO deployments (project_id, project_name, user_id, archive_id,"
            " archive_name, reason, source_id, operation, state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            project_id,
            project_name,
            user_id,
            archive_id,
            archive_name,
            reason,
            source_id,
            operation,
            State.QUEUED,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(deployment_id))
        found = await self.get(deployment_id, conn)
        assert found is not None
        return found

    async def supersede_queued(self, conn: Connection, project_id: int, error: str) -> None:
        """Queued deployments (not operations) of the project give way to a newer one."""
        await conn.execute(
            "UPDATE deployments SET state = $2, finished_at = now(), error = $3"
            " WHERE project_id = $1 AND state = $4 AND operation = $5",
            project_id,
            State.SUPERSEDED,
            error,
            State.QUEUED,
            Operation.DEPLOY,
        )

    async def cancel_queued(
        self, deployment_id: int, error: str, conn: Connection | None = None
    ) -> bool:
        async with _using(self._pool, conn) as db:
            row = await db.fetchval(
                "UPDATE deployments SET state = $2, finished_at = now(), error = $3"
                " WHERE id = $1 AND state = $4 RETURNING id",
                deployment_id,
                State.CANCELLED,
                error,
                State.QUEUED,
            )
        return row is not None

    async def request_cancel(self, deployment_id: int, conn: Connection | None = None) -> bool:
        """Ask the worker holding the job to stop it."""
        async with _using(self._pool, conn) as db:
            row = await db.fetchval(
                "UPDATE deployments SET cancel_requested = true"
                " WHERE id = $1 AND state = any($2::text[]) RETURNING id",
                deployment_id,
                values(IN_PROGRESS_STATES),
            )
        return row is not None

    async def cancel_project(self, conn: Connection, project_id: int, error: str) -> None:
        """Cancel the project's queued jobs and ask its workers to stop the one in progress."""
        await conn.execute(
            "UPDATE deployments SET state = $2, finished_at = now(), error = $3"
            " WHERE project_id = $1 AND state = $4",
            project_id,
            State.CANCELLED,
            error,
            State.QUEUED,
        )
        await conn.execute(
            "UPDATE deployments SET cancel_requested = true"
            " WHERE project_id = $1 AND state = any($2::text[])",
            project_id,
            values(IN_PROGRESS_STATES),
        )

    # --- the worker side ----------------------------------------------------------------------

    async def claim(
        self, worker: str, lease: float, per_user: int, *, operations_only: bool = False
    ) -> Deployment | None:
        """The next job (one per project), now held by `worker`. Builds are fair between
        users: at most `per_user` building at once, the users with fewest first. Stop, start
        and delete jobs are short and count against no one."""
        async with connection(self._pool) as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
                    claimed = await conn.fetchval(
                        "WITH active AS (SELECT user_id, count(*) AS jobs FROM deployments"
                        "  WHERE state = any($9::text[]) GROUP BY user_id),"
                        " next AS ("
                        " SELECT d.id FROM deployments d"
                        " LEFT JOIN active a ON a.user_id = d.user_id"
                        " WHERE d.state = $5"
                        " AND (d.operation <> $6 OR (NOT $10 AND coalesce(a.jobs, 0) < $3))"
                        " AND NOT EXISTS (SELECT 1 FROM deployments busy"
                        "  WHERE busy.project_id = d.project_id"
                        "  AND busy.state = any($4::text[]))"
                        " ORDER BY d.operation = $6, coalesce(a.jobs, 0), d.id"
                        " FOR UPDATE OF d SKIP LOCKED LIMIT 1)"
                        " UPDATE deployments SET worker = $1,"
                        " state = CASE WHEN deployments.operation = $6 THEN $7 ELSE $8 END,"
                        " lease_expires_at = now() + make_interval(secs => $2),"
                        " started_at = now(), attempts = attempts + 1"
                        " FROM next WHERE deployments.id = next.id RETURNING deployments.id",
                        worker,
                        lease,
                        per_user,
                        values(IN_PROGRESS_STATES),
                        State.QUEUED,
                        Operation.DEPLOY,
                        State.BUILDING,
                        State.WORKING,
                        values((State.BUILDING, State.STARTING)),
                        operations_only,
                    )
            except asyncpg.UniqueViolationError:
                # Another worker started a job of the same project a moment ago.
                return None
            if claimed is None:
                return None
            return await self.get(claimed, conn)

    async def renew(self, deployment_id: int, worker: str, lease: float) -> bool | None:
        """Extend the lease; the job's cancel request, or None if the job is not ours."""
        async with _using(self._pool, None) as db:
            row = await db.fetchrow(
                "UPDATE deployments SET lease_expires_at = now() + make_interval(secs => $3)"
                " WHERE id = $1 AND worker = $2 AND state = any($4::text[])"
                " RETURNING cancel_requested",
                deployment_id,
                worker,
                lease,
                values(IN_PROGRESS_STATES),
            )
        return bool(row["cancel_requested"]) if row else None

    async def log_size_for_update(self, conn: Connection, deployment_id: int) -> int | None:
        size = await conn.fetchval(
            "SELECT octet_length(log) FROM deployments WHERE id = $1 FOR UPDATE", deployment_id
        )
        return cast(int | None, size)

    async def append_log(self, conn: Connection, deployment_id: int, text: str) -> None:
        await conn.execute(
            "UPDATE deployments SET log = log || $2 WHERE id = $1", deployment_id, text
        )

    async def record(
        self,
        deployment_id: int,
        worker: str,
        *,
        kind: Kind | None,
        image: str | None,
        stack: str | None,
        port: int | None,
        app_port: int | None,
        state: State | None,
    ) -> bool:
        """Note what the job made so far (each field only when given); False: not ours."""
        async with _using(self._pool, None) as db:
            row = await db.fetchval(
                "UPDATE deployments SET kind = coalesce($3, kind), image = coalesce($4, image),"
                " stack = coalesce($5, stack), port = coalesce($6, port),"
                " app_port = coalesce($7, app_port), state = coalesce($8, state)"
                " WHERE id = $1 AND worker = $2 AND state = any($9::text[])"
                " RETURNING id",
                deployment_id,
                worker,
                kind,
                image,
                stack,
                port,
                app_port,
                state,
                sources_of(state) if state is not None else values(IN_PROGRESS_STATES),
            )
        return row is not None

    async def mark_running(self, conn: Connection, deployment_id: int, worker: str) -> int | None:
        """The job went live; its project's id, or None if it was not ours."""
        project_id = await conn.fetchval(
            "UPDATE deployments SET state = $3, finished_at = now(), lease_expires_at = NULL"
            " WHERE id = $1 AND worker = $2 AND state = any($4::text[]) RETURNING project_id",
            deployment_id,
            worker,
            State.RUNNING,
            sources_of(State.RUNNING),
        )
        return cast(int | None, project_id)

    async def supersede_running(self, conn: Connection, deployment_id: int) -> None:
        await conn.execute(
            "UPDATE deployments SET state = $2 WHERE id = $1 AND state = any($3::text[])",
            deployment_id,
            State.SUPERSEDED,
            sources_of(State.SUPERSEDED),
        )

    async def finish(self, deployment_id: int, worker: str, state: State, error: str) -> bool:
        """End a job held by `worker` (done, failed or cancelled); False if it was not ours."""
        async with _using(self._pool, None) as db:
            row = await db.fetchval(
                "UPDATE deployments SET state = $3, error = $4, finished_at = now(),"
                " lease_expires_at = NULL WHERE id = $1 AND worker = $2"
                " AND state = any($5::text[]) AND state = any($6::text[]) RETURNING id",
                deployment_id,
                worker,
                state,
                error,
                sources_of(state),
                values(IN_PROGRESS_STATES),
            )
        return row is not None

    async def requeue(self, deployment_id: int, worker: str, note: str, max_bytes: int) -> bool:
        """Give a job back, forgetting what the attempt made; `note` joins its log if it fits."""
        async with _using(self._pool, None) as db:
            row = await db.fetchval(
                "UPDATE deployments SET state = $5, worker = NULL, lease_expires_at = NULL,"
                " started_at = NULL, kind = NULL, image = NULL, stack = NULL, port = NULL,"
                " app_port = NULL, log = CASE WHEN octet_length(log) + octet_length($3) <= $4"
                " THEN log || $3 ELSE log END"
                " WHERE id = $1 AND worker = $2 AND state = any($6::text[])"
                " AND NOT cancel_requested RETURNING id",
                deployment_id,
                worker,
                note,
                max_bytes,
                State.QUEUED,
                values(IN_PROGRESS_STATES),
            )
        return row is not None

    async def fail_expired(self, error: str) -> list[Deployment]:
        """Fail the jobs whose lease ran out (their worker died)."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "UPDATE deployments SET state = $2, error = $1, finished_at = now()"
                " WHERE state = any($3::text[]) AND lease_expires_at < now() RETURNING id",
                error,
                State.FAILED,
                values(IN_PROGRESS_STATES),
            )
            return await self.many([row["id"] for row in rows], conn)

    async def prune(self, project_id: int, keep: int, live_id: int | None) -> int:
        """Delete the project's rows beyond the newest `keep`, except the live one, those in
        progress, those whose image is kept for a rollback, and those a kept deployment reuses
        the image of. Returns how many were deleted."""
        async with _using(self._pool, None) as db:
            deleted = await db.fetch(
                "DELETE FROM deployments d WHERE d.project_id = $1"
                " AND (d.state = any($4::text[]) OR (d.state = $5 AND d.image IS NULL))"
                " AND d.id IS DISTINCT FROM $3"
                " AND d.id NOT IN (SELECT id FROM deployments WHERE project_id = $1"
                "  ORDER BY id DESC LIMIT $2)"
                " AND NOT EXISTS (SELECT 1 FROM deployments other WHERE other.source_id = d.id"
                "  AND other.id <> d.id AND other.state <> all($6::text[]))"
                " RETURNING d.id",
                project_id,
                max(1, keep),
                live_id,
                values(ENDED_STATES),
                State.SUPERSEDED,
                values((State.FAILED, State.CANCELLED)),
            )
        return len(deleted)

    async def forget_image(self, deployment_id: int) -> None:
        async with _using(self._pool, None) as db:
            await db.execute("UPDATE deployments SET image = NULL WHERE id = $1", deployment_id)

    # --- lost containers ----------------------------------------------------------------------

    async def clear_missing(self, ids: list[int]) -> None:
        async with _using(self._pool, None) as db:
            await db.execute(
                "UPDATE deployments SET missing_since = NULL WHERE id = any($1::bigint[])", ids
            )

    async def mark_missing(self, conn: Connection, deployment_id: int) -> bool:
        """Note (once) that a live deployment's containers are gone; False if noted before."""
        marked = await conn.fetchval(
            "UPDATE deployments SET missing_since = now() WHERE id = $1"
            " AND missing_since IS NULL RETURNING id",
            deployment_id,
        )
        return marked is not None
