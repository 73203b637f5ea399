"""Deployments: one record per attempt to run a project's archive version, queued in PostgreSQL.

States: queued -> building -> starting -> running, or failed / cancelled; a running deployment
becomes superseded when another one takes its place (its image stays for rollback). A queued
deployment that a newer one replaces before it started is superseded too.

Front ends call `DeploymentService`; workers (`core.deploy.worker`) claim queued jobs through
`core.deploy.queue` and run them with `core.deploy.pipeline`, which is also the `Runtime` that
stops, starts and streams the logs of what runs. Every method takes the acting user's id:
another user's project or deployment is "not found", exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, cast

import asyncpg

from core.actor import Actor
from core.archives.service import ArchiveService
from core.db.pool import Connection, Pool, connection
from core.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from core.projects.service import Project, ProjectService

State = Literal["queued", "building", "starting", "running", "failed", "cancelled", "superseded"]
# heal: the panel started the live image again after its containers went (core.deploy.live_check).
Reason = Literal["deploy", "redeploy", "rollback", "restart", "heal"]
Kind = Literal["dockerfile", "compose"]
ACTIVE_STATES: tuple[State, ...] = ("queued", "building", "starting")
# Deployments that went live once; their image can run again (rollback) while it is kept.
SUCCEEDED_STATES: tuple[State, ...] = ("running", "superseded")
# What a project looks like from outside.
ProjectState = Literal["new", "deploying", "running", "stopped", "failed"]
NOTIFY_CHANNEL = "ghst_deployments"
HISTORY_LIMIT = 200


@dataclass(frozen=True)
class Deployment:
    id: int
    project_id: int
    project: str
    user_id: int
    archive_id: int | None
    archive_name: str  # e.g. "v3-app.zip"; kept when the archive is deleted
    reason: Reason
    source_id: int | None  # the deployment whose image a rollback or restart reuses
    kind: Kind | None
    state: State
    error: str
    image: str | None
    stack: str | None  # compose project name, for compose deployments
    port: int | None  # host port on 127.0.0.1
    app_port: int | None  # port inside the container
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Live, but its containers were found gone at this time (removed outside the panel).
    missing_since: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def succeeded(self) -> bool:
        """It went live once (it may have been replaced since)."""
        return self.state in SUCCEEDED_STATES

    @property
    def can_roll_back_to(self) -> bool:
        return self.succeeded and self.image is not None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or datetime.now(self.started_at.tzinfo)) - self.started_at


@dataclass(frozen=True)
class ProjectStatus:
    state: ProjectState
    live: Deployment | None  # the one nginx routes to, if any
    latest: Deployment | None  # the newest attempt, whatever its state
    url: str  # http://<project>.<domain>[:port]/


class Runtime(Protocol):
    """What runs deployments (the deployer); the service asks it to act on live ones."""

    async def stop(self, deployment: Deployment) -> None: ...

    async def start(self, deployment: Deployment) -> None: ...

    def follow_logs(self, deployment: Deployment, tail: int) -> AsyncIterator[str]: ...

    async def remove_project(self, project: Project) -> None: ...


DEPLOYMENT_COLUMNS = """
d.id, d.project_id, p.name AS project, d.user_id, d.archive_id, d.archive_name, d.reason,
d.source_id, d.kind, d.state, d.error, d.image, d.stack, d.port, d.app_port, d.created_at,
d.started_at, d.finished_at, d.missing_since
"""
DEPLOYMENT_SELECT = (
    f"SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN projects p ON p.id = d.project_id"
)


def row_to_deployment(row: asyncpg.Record) -> Deployment:
    return Deployment(
        id=row["id"],
        project_id=row["project_id"],
        project=row["project"],
        user_id=row["user_id"],
        archive_id=row["archive_id"],
        archive_name=row["archive_name"],
        reason=cast(Reason, row["reason"]),
        source_id=row["source_id"],
        kind=cast(Kind | None, row["kind"]),
        state=cast(State, row["state"]),
        error=row["error"],
        image=row["image"],
        stack=row["stack"],
        port=row["port"],
        app_port=row["app_port"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        missing_since=row["missing_since"],
    )


async def live_deployment(pool: Pool, project_id: int) -> Deployment | None:
    """The deployment nginx routes the project to, if any (no owner check: callers do it)."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(
            DEPLOYMENT_SELECT + " WHERE d.id = (SELECT live_deployment_id FROM projects"
            " WHERE id = $1)",
            project_id,
        )
    return row_to_deployment(row) if row else None


def _acting(user_id: int) -> Actor:
    """The signed-in user the front end names, as the actor the project and archive services
    check (until this service takes an Actor itself)."""
    return Actor("user", user_id, f"user {user_id}")


class DeploymentService:
    def __init__(
        self,
        pool: Pool,
        projects: ProjectService,
        archives: ArchiveService,
        url_for: Callable[[str], str],
    ) -> None:
        self._pool = pool
        self._projects = projects
        self._archives = archives
        self._url_for = url_for
        self._runtime: Runtime | None = None

    def attach_runtime(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise UnavailableError("Deployments are not available on this panel.")
        return self._runtime

    # --- queueing -----------------------------------------------------------------------------

    async def deploy(self, user_id: int, project: str, archive: str | None = None) -> Deployment:
        """Queue a build of `archive` ("v3-app.zip", "v3" or "3"; default: the newest version)."""
        found = await self._projects.get(_acting(user_id), project)
        if archive is None:
            versions = [
                a for a in await self._archives.list(_acting(user_id), project) if a.version
            ]
            if not versions:
                raise ValidationError(
                    f"{project} has no uploaded version yet: upload an archive first."
                )
            chosen = max(versions, key=lambda a: a.version or 0)
        else:
            chosen = await self._archives.find(_acting(user_id), project, archive)
        return await self._enqueue(found, user_id, "deploy", chosen.id, chosen.name)

    async def redeploy(self, user_id: int, project: str) -> Deployment:
        """Build the live deployment's archive again (with the current env vars)."""
        found = await self._projects.get(_acting(user_id), project)
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} is not running yet: deploy a version first.")
        if live.archive_id is None:
            raise ValidationError(
                f"The archive {live.archive_name} was deleted, so it cannot be built again."
            )
        return await self._enqueue(found, user_id, "redeploy", live.archive_id, live.archive_name)

    async def rollback(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        """Queue a deployment that runs an earlier successful deployment's image (no build)."""
        found = await self._projects.get(_acting(user_id), project)
        target = await self.get(user_id, project, deployment_id)
        if not target.succeeded:
            raise ValidationError(
                f"Deployment #{target.id} never went live, so there is nothing to roll back to."
            )
        if target.image is None:
            raise ValidationError(
                f"The image of deployment #{target.id} was pruned (only the last few are kept)."
            )
        live = await self._live(found)
        if live is not None and live.id == target.id:
            raise ValidationError(f"Deployment #{target.id} is the one running now.")
        return await self._enqueue(
            found, user_id, "rollback", target.archive_id, target.archive_name, target.id
        )

    async def restart(self, user_id: int, project: str) -> Deployment:
        """New containers from the live image with the current env vars, switched without
        downtime (a restart is a deployment that skips the build)."""
        found = await self._projects.get(_acting(user_id), project)
        live = await self._live(found)
        if live is None or live.image is None:
            raise ValidationError(f"{project} is not running yet: deploy a version first.")
        return await self._enqueue(
            found, user_id, "restart", live.archive_id, live.archive_name, live.id
        )

    async def _enqueue(
        self,
        project: Project,
        user_id: int,
        reason: Reason,
        archive_id: int | None,
        archive_name: str,
        source_id: int | None = None,
    ) -> Deployment:
        async with connection(self._pool) as conn, conn.transaction():
            # The project row serialises deploys of one project.
            alive = await conn.fetchval(
                "SELECT id FROM projects WHERE id = $1 AND user_id = $2 FOR UPDATE",
                project.id,
                user_id,
            )
            if alive is None:
                raise NotFoundError(f"You have no project named {project.name!r}.")
            # Only the newest request matters: older queued ones would be replaced at once.
            await conn.execute(
                "UPDATE deployments SET state = 'superseded', finished_at = now(),"
                " error = 'A newer deployment was queued before this one started.'"
                " WHERE project_id = $1 AND state = 'queued'",
                project.id,
            )
            deployment_id = await conn.fetchval(
                "INSERT INTO deployments"
                " (project_id, user_id, archive_id, archive_name, reason, source_id)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                project.id,
                user_id,
                archive_id,
                archive_name,
                reason,
                source_id,
            )
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(deployment_id))
            return await self._fetch(conn, deployment_id)

    async def cancel(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        """Cancel a queued deployment at once, or ask its worker to stop building it."""
        target = await self.get(user_id, project, deployment_id)
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "UPDATE deployments SET state = 'cancelled', finished_at = now(),"
                " error = 'Cancelled before it started.'"
                " WHERE id = $1 AND state = 'queued' RETURNING id",
                target.id,
            )
            if row is None:
                row = await conn.fetchrow(
                    "UPDATE deployments SET cancel_requested = true"
                    " WHERE id = $1 AND state IN ('building', 'starting') RETURNING id",
                    target.id,
                )
            if row is None:
                raise ConflictError(
                    f"Deployment #{target.id} has already finished ({target.state}).",
                    title="Already finished",
                )
            return await self._fetch(conn, target.id)

    # --- what runs ----------------------------------------------------------------------------

    async def stop(self, user_id: int, project: str) -> None:
        """Stop the live containers; nginx answers a friendly 503 until `start`."""
        found = await self._projects.get(_acting(user_id), project)
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} is not running: there is nothing to stop.")
        await self._refuse_while_deploying(found)
        await self.runtime.stop(live)
        await self._set_stopped(found, True)

    async def start(self, user_id: int, project: str) -> None:
        """Start the stopped live containers again and route traffic back to them."""
        found = await self._projects.get(_acting(user_id), project)
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} has never been deployed: deploy a version first.")
        await self._refuse_while_deploying(found)
        await self.runtime.start(live)
        await self._set_stopped(found, False)

    async def runtime_logs(self, user_id: int, project: str, tail: int = 200) -> AsyncIterator[str]:
        """The live app's log lines (last `tail`, then new ones as they come) until closed."""
        found = await self._projects.get(_acting(user_id), project)
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} is not running: there are no logs to show.")
        stream = self.runtime.follow_logs(live, tail)
        try:
            async for line in stream:
                yield line
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def delete_project(self, user_id: int, project: str, confirmation: str) -> Project:
        """Remove what runs (containers, images, network, vhost) then the project itself."""
        found = await self._projects.get(_acting(user_id), project)
        if confirmation.strip() != found.name:
            raise ValidationError(f"Type the project's name, {project!r}, to confirm deleting it.")
        async with connection(self._pool) as conn, conn.transaction():
            # Marked stopped first, under the project's row lock: the lost-container check
            # (core.deploy.live_check) queues no heal for a project whose containers are going away,
            # and a heal it queued just before is cancelled below with the rest.
            await conn.execute("UPDATE projects SET stopped = true WHERE id = $1", found.id)
            # Queued work must not start while the project is going away.
            await conn.execute(
                "UPDATE deployments SET state = 'cancelled', finished_at = now(),"
                " error = 'The project was deleted.' WHERE project_id = $1 AND state = 'queued'",
                found.id,
            )
            await conn.execute(
                "UPDATE deployments SET cancel_requested = true"
                " WHERE project_id = $1 AND state IN ('building', 'starting')",
                found.id,
            )
        if self._runtime is not None:
            await self._runtime.remove_project(found)
        return await self._archives.delete_project(_acting(user_id), project, confirmation)

    # --- reading ------------------------------------------------------------------------------

    async def list(
        self, user_id: int, project: str, limit: int = HISTORY_LIMIT
    ) -> list[Deployment]:
        """Newest first."""
        found = await self._projects.get(_acting(user_id), project)
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                DEPLOYMENT_SELECT + " WHERE d.project_id = $1 ORDER BY d.id DESC LIMIT $2",
                found.id,
                limit,
            )
        return [row_to_deployment(row) for row in rows]

    async def get(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        found = await self._projects.get(_acting(user_id), project)
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                DEPLOYMENT_SELECT + " WHERE d.id = $1 AND d.project_id = $2",
                deployment_id,
                found.id,
            )
        if row is None:
            raise NotFoundError(f"{project} has no deployment #{deployment_id}.")
        return row_to_deployment(row)

    async def status(self, user_id: int, project: str) -> ProjectStatus:
        found = await self._projects.get(_acting(user_id), project)
        async with connection(self._pool) as conn:
            flags = await conn.fetchrow(
                "SELECT stopped, live_deployment_id FROM projects WHERE id = $1", found.id
            )
            if flags is None:
                raise NotFoundError(f"You have no project named {project[:40]!r}.")
            latest_row = await conn.fetchrow(
                DEPLOYMENT_SELECT + " WHERE d.project_id = $1 ORDER BY d.id DESC LIMIT 1",
                found.id,
            )
            live_row = None
            if flags["live_deployment_id"] is not None:
                live_row = await conn.fetchrow(
                    DEPLOYMENT_SELECT + " WHERE d.id = $1", flags["live_deployment_id"]
                )
        latest = row_to_deployment(latest_row) if latest_row else None
        live = row_to_deployment(live_row) if live_row else None
        state = project_state(
            latest.state if latest else None, live is not None, bool(flags["stopped"])
        )
        return ProjectStatus(state, live, latest, self._url_for(found.name))

    async def statuses(self, user_id: int) -> dict[str, ProjectState]:
        """The state of each of the user's projects, by name, in one query (for lists)."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT p.name, p.stopped, p.live_deployment_id IS NOT NULL AS live,"
                " (SELECT d.state FROM deployments d WHERE d.project_id = p.id"
                "  ORDER BY d.id DESC LIMIT 1) AS latest"
                " FROM projects p WHERE p.user_id = $1",
                user_id,
            )
        return {
            row["name"]: project_state(row["latest"], row["live"], row["stopped"]) for row in rows
        }

    async def build_log(
        self, user_id: int, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        """The build log from character `offset` on, and the offset to ask for next time."""
        found = await self._projects.get(_acting(user_id), project)
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT substr(log, $3 + 1) AS text, length(log) AS size FROM deployments"
                " WHERE id = $1 AND project_id = $2",
                deployment_id,
                found.id,
                max(0, offset),
            )
        if row is None:
            raise NotFoundError(f"{project} has no deployment #{deployment_id}.")
        return row["text"], int(row["size"])

    # --- helpers ------------------------------------------------------------------------------

    async def _live(self, project: Project) -> Deployment | None:
        return await live_deployment(self._pool, project.id)

    async def _refuse_while_deploying(self, project: Project) -> None:
        async with connection(self._pool) as conn:
            busy = await conn.fetchval(
                "SELECT id FROM deployments WHERE project_id = $1"
                " AND state IN ('building', 'starting')",
                project.id,
            )
        if busy is not None:
            raise ConflictError(
                f"Deployment #{busy} of {project.name} is in progress: wait for it or cancel it."
            )

    async def _set_stopped(self, project: Project, stopped: bool) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE projects SET stopped = $2 WHERE id = $1", project.id, stopped
            )

    @staticmethod
    async def _fetch(conn: Connection, deployment_id: int) -> Deployment:
        row = await conn.fetchrow(DEPLOYMENT_SELECT + " WHERE d.id = $1", deployment_id)
        assert row is not None
        return row_to_deployment(row)


def project_state(latest: str | None, has_live: bool, stopped: bool) -> ProjectState:
    if latest in ACTIVE_STATES:
        return "deploying"
    if not has_live:
        return "failed" if latest == "failed" else "new"
    return "stopped" if stopped else "running"
