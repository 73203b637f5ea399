"""Deployments: one record per attempt to run a project's archive version, queued in PostgreSQL.

The states and their moves are in `core.deploy.model`; the rows are read and written only by
`core.deploy.store`. Front ends call `DeploymentService`; workers (`core.deploy.worker`) claim
queued jobs through `core.deploy.queue` and run them with `core.deploy.pipeline`. Stop, start
and delete are jobs of the same queue (`core.deploy.operations`), so the process serving the
dashboard never calls Docker for them: it queues the job and waits for a worker to report.

Every method takes the `Actor`: deploying, cancelling, stopping and deleting need the "deploy"
scope, logs "logs", the rest "read". Another user's project or deployment is "not found",
exactly like a missing one. Methods that write take an optional `conn`, to join the caller's
transaction (core.db.unit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.actor import Actor
from core.archives.service import ArchiveService
from core.audit import entries as audit
from core.audit.service import record_alone, records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import transaction
from core.deploy.model import (
    ACTIVE_STATES,
    SUCCEEDED_STATES,
    Deployment,
    Kind,
    Operation,
    ProjectState,
    Reason,
    State,
    project_state,
)
from core.deploy.store import NOTIFY_CHANNEL, DeploymentStore
from core.errors import ConflictError, NotFoundError, PanelError, UnavailableError, ValidationError
from core.projects.service import Project, ProjectService

HISTORY_LIMIT = 200
# Reads and removals this service makes for an actor it has already checked.
PANEL = Actor.system("deployments")
# What the audit log calls a queued job (a deploy is "deployment.<reason>").
AUDIT_ACTIONS = {
    Operation.STOP: "project.stop",
    Operation.START: "project.start",
    Operation.DELETE: "project.delete",
}
# A stop, start or delete that no worker took by then is withdrawn, and the user told.
OPERATION_CLAIM_WAIT = 30.0
OPERATION_POLL = 0.05  # while a user waits for a stop or start: a few cheap reads
NO_WORKER = (
    "No deployment worker took the {what} of {project} within {seconds:g} s, so nothing was"
    " done: the panel's worker is not running. Try again once it is."
)

# Kept importable from here: front ends and tests name them through the service.
__all__ = [
    "ACTIVE_STATES",
    "HISTORY_LIMIT",
    "NOTIFY_CHANNEL",
    "SUCCEEDED_STATES",
    "Deployment",
    "DeploymentService",
    "Kind",
    "ProjectState",
    "ProjectStatus",
    "Reason",
    "Runtime",
    "State",
    "project_state",
]


@dataclass(frozen=True)
class ProjectStatus:
    state: ProjectState
    live: Deployment | None  # the one nginx routes to, if any
    latest: Deployment | None  # the newest attempt, whatever its state
    url: str  # http://<project>.<domain>[:port]/


class Runtime(Protocol):
    """What runs deployments (the deployer): the workers stop, start and remove with it; the
    service only streams the live app's logs through it."""

    async def stop(self, deployment: Deployment) -> None: ...

    async def start(self, deployment: Deployment) -> None: ...

    def follow_logs(
        self, deployment: Deployment, tail: int, *, since: datetime | None = None
    ) -> AsyncIterator[str]: ...

    async def remove_project(self, project: Project) -> None: ...


class DeploymentService:
    def __init__(
        self,
        pool: Pool,
        projects: ProjectService,
        archives: ArchiveService,
        url_for: Callable[[str], str],
        *,
        claim_wait: float = OPERATION_CLAIM_WAIT,
    ) -> None:
        self._pool = pool
        self.claim_wait = claim_wait
        self._store = DeploymentStore(pool)
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

    @records_refusals("deployment.deploy")
    async def deploy(
        self, actor: Actor, project: str, archive: str | None = None, conn: Connection | None = None
    ) -> Deployment:
        """Queue a build of `archive` ("v3-app.zip", "v3" or "3"; default: the newest version)."""
        found = await self._project(actor, project, "deploy")
        if archive is None:
            versions = [a for a in await self._archives.list(PANEL, project) if a.version]
            if not versions:
                raise ValidationError(
                    f"{project} has no uploaded version yet: upload an archive first."
                )
            chosen = max(versions, key=lambda a: a.version or 0)
        else:
            chosen = await self._archives.find(PANEL, project, archive)
        return await self._enqueue(found, actor, "deploy", chosen.id, chosen.name, conn=conn)

    @records_refusals("deployment.redeploy")
    async def redeploy(
        self, actor: Actor, project: str, conn: Connection | None = None
    ) -> Deployment:
        """Build the live deployment's archive again (with the current env vars)."""
        found = await self._project(actor, project, "deploy")
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} is not running yet: deploy a version first.")
        if live.archive_id is None:
            raise ValidationError(
                f"The archive {live.archive_name} was deleted, so it cannot be built again."
            )
        return await self._enqueue(
            found, actor, "redeploy", live.archive_id, live.archive_name, conn=conn
        )

    @records_refusals("deployment.rollback")
    async def rollback(
        self, actor: Actor, project: str, deployment_id: int, conn: Connection | None = None
    ) -> Deployment:
        """Queue a deployment that runs an earlier successful deployment's image (no build)."""
        found = await self._project(actor, project, "deploy")
        target = await self._get(found, deployment_id)
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
            found, actor, "rollback", target.archive_id, target.archive_name, target.id, conn=conn
        )

    @records_refusals("deployment.restart")
    async def restart(
        self, actor: Actor, project: str, conn: Connection | None = None
    ) -> Deployment:
        """New containers from the live image with the current env vars, switched without
        downtime (a restart is a deployment that skips the build)."""
        found = await self._project(actor, project, "deploy")
        live = await self._live(found)
        if live is None or live.image is None:
            raise ValidationError(f"{project} is not running yet: deploy a version first.")
        return await self._enqueue(
            found, actor, "restart", live.archive_id, live.archive_name, live.id, conn=conn
        )

    async def _enqueue(
        self,
        project: Project,
        actor: Actor,
        reason: Reason,
        archive_id: int | None,
        archive_name: str,
        source_id: int | None = None,
        *,
        operation: Operation = Operation.DEPLOY,
        conn: Connection | None = None,
    ) -> Deployment:
        async with transaction(self._pool, conn) as tx:
            # The project row serialises deploys of one project.
            if await self._projects.lock(tx, project.id) is None:
                raise NotFoundError(f"You have no project named {project.name!r}.")
            if operation in (Operation.DEPLOY, Operation.START):
                # Under the project's lock: a suspension committing now is seen, or waits.
                what = reason if operation is Operation.DEPLOY else "start"
                await self._projects.holds.refuse(tx, project.id, what)
            if operation is Operation.DEPLOY:
                # Only the newest request matters: older queued ones would be replaced at once.
                await self._store.supersede_queued(
                    tx, project.id, "A newer deployment was queued before this one started."
                )
            job = await self._store.insert(
                tx,
                project_id=project.id,
                project_name=project.name,
                # Who asked: the owner, or the operator acting on the project.
                user_id=actor.user_id if actor.user_id is not None else project.user_id,
                archive_id=archive_id,
                archive_name=archive_name,
                reason=reason,
                source_id=source_id,
                operation=operation,
            )
            await audit.record(
                tx,
                actor,
                AUDIT_ACTIONS.get(operation, f"deployment.{reason}"),
                audit.Target("project", project.name, project.id, project.user_id),
                # The request's entry: the job's result is the deployment's state (a stop,
                # start or delete waited for gets a second entry if it fails).
                metadata={
                    "deployment": job.id,
                    "state": str(job.state),
                    "archive": archive_name or None,
                    "from_deployment": source_id,
                },
            )
            return job

    @records_refusals("deployment.cancel")
    async def cancel(
        self, actor: Actor, project: str, deployment_id: int, conn: Connection | None = None
    ) -> Deployment:
        """Cancel a queued deployment at once, or ask its worker to stop building it."""
        found = await self._project(actor, project, "deploy")
        target = await self._get(found, deployment_id)
        async with transaction(self._pool, conn) as tx:
            done = await self._store.cancel_queued(
                target.id, "Cancelled before it started.", tx
            ) or await self._store.request_cancel(target.id, tx)
            if not done:
                raise ConflictError(
                    f"Deployment #{target.id} has already finished ({target.state}).",
                    title="Already finished",
                )
            await audit.record(
                tx,
                actor,
                "deployment.cancel",
                audit.Target("project", found.name, found.id, found.user_id),
                metadata={"deployment": target.id, "from": str(target.state)},
            )
            return await self._get(found, target.id, tx)

    # --- what runs: stop, start and delete are jobs for a worker --------------------------------

    @records_refusals("project.stop")
    async def stop(self, actor: Actor, project: str, conn: Connection | None = None) -> Deployment:
        """Stop the live containers; nginx answers a friendly 503 until `start`. Waits for a
        worker to do it (with `conn`: queues it in the caller's transaction and returns)."""
        found = await self._project(actor, project, "deploy")
        if await self._live(found) is None:
            raise ValidationError(f"{project} is not running: there is nothing to stop.")
        await self._refuse_while_deploying(found)
        return await self._operate(found, actor, Operation.STOP, conn)

    @records_refusals("project.start")
    async def start(self, actor: Actor, project: str, conn: Connection | None = None) -> Deployment:
        """Start the stopped live containers again and route traffic back to them (waits for
        a worker, like `stop`)."""
        found = await self._project(actor, project, "deploy")
        if await self._live(found) is None:
            raise ValidationError(f"{project} has never been deployed: deploy a version first.")
        await self._refuse_while_deploying(found)
        return await self._operate(found, actor, Operation.START, conn)

    @records_refusals("project.delete")
    async def delete_project(
        self, actor: Actor, project: str, confirmation: str, conn: Connection | None = None
    ) -> Project:
        """Remove what runs (containers, images, network, vhost) then the project itself; a
        worker does it (waited for, like `stop`)."""
        found = await self._project(actor, project, "deploy")
        if confirmation.strip() != found.name:
            raise ValidationError(f"Type the project's name, {project!r}, to confirm deleting it.")
        if not await self._store.any_of_project(found.id):
            # Never deployed: nothing runs or was built, so no worker (nor Docker) is needed.
            return await self._archives.delete_project(actor, found.name, confirmation)
        async with transaction(self._pool, conn) as tx:
            if await self._projects.lock(tx, found.id) is None:
                raise NotFoundError(f"You have no project named {project[:40]!r}.")
            flags = await self._projects.deploy_flags([found.id], tx)
            was_stopped = found.id in flags and flags[found.id].stopped
            # Marked stopped first, under the project's row lock: the lost-container check
            # (core.deploy.live_check) queues no heal for a project whose containers are going
            # away, and a heal it queued just before is cancelled below with the rest.
            await self._projects.set_stopped(found.id, True, tx)
            # Queued work must not start while the project is going away.
            await self._store.cancel_project(tx, found.id, "The project was deleted.")
            job = await self._operate(found, actor, Operation.DELETE, tx)
        if conn is None:
            try:
                await self._waited(actor, found, job)
            except UnavailableError:  # withdrawn: nothing was deleted, nothing stays stopped
                await self._projects.set_stopped(found.id, was_stopped)
                raise
        return found

    # --- holds: billing's suspension stops and resumes projects through the same queue -------

    async def hold(
        self, conn: Connection, project: Project, actor: Actor, reason: str
    ) -> Deployment | None:
        """In the caller's transaction, which has recorded the hold: cancel the project's queued
        deployments (and ask a running build to stop), and queue a stop of what is live. A
        worker carries it out; nothing waits for it. The stop job, if one was queued."""
        await self._store.cancel_project(conn, project.id, reason)
        flags = (await self._projects.deploy_flags([project.id], conn)).get(project.id)
        if flags is None or flags.live_id is None:
            return None
        return await self._enqueue(
            project, actor, "deploy", None, "", operation=Operation.STOP, conn=conn
        )

    async def release(
        self, conn: Connection, project: Project, actor: Actor, *, start: bool
    ) -> Deployment | None:
        """In the caller's transaction, which has ended the hold: queue a start of what is live
        (`start`), or a stop that puts back the owner's own stopped page. No wait."""
        flags = (await self._projects.deploy_flags([project.id], conn)).get(project.id)
        if flags is None or flags.live_id is None:
            return None
        operation = Operation.START if start else Operation.STOP
        return await self._enqueue(
            project, actor, "deploy", None, "", operation=operation, conn=conn
        )

    async def runtime_logs(
        self, actor: Actor, project: str, tail: int = 200, *, since: datetime | None = None
    ) -> AsyncIterator[str]:
        """The live app's log lines (the last `tail`, of those after `since` if given, then new
        ones as they come) until closed."""
        found = await self._project(actor, project, "logs")
        live = await self._live(found)
        if live is None:
            raise ValidationError(f"{project} is not running: there are no logs to show.")
        # `since` only when asked: runtimes that predate it (tests' stand-ins) take two arguments.
        stream = (
            self.runtime.follow_logs(live, tail)
            if since is None
            else self.runtime.follow_logs(live, tail, since=since)
        )
        try:
            async for line in stream:
                yield line
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _operate(
        self, project: Project, actor: Actor, operation: Operation, conn: Connection | None
    ) -> Deployment:
        """Queue a stop, start or delete; without `conn`, wait for a worker to carry it out."""
        job = await self._enqueue(
            project, actor, "deploy", None, "", operation=operation, conn=conn
        )
        if conn is not None:
            return job
        return await self._waited(actor, project, job)

    async def _waited(self, actor: Actor, project: Project, job: Deployment) -> Deployment:
        """`_outcome`, a failure audited: the request's entry only said it was queued."""
        try:
            return await self._outcome(project, job)
        except PanelError as error:
            with contextlib.suppress(Exception):  # the failure is what the user must hear
                await record_alone(
                    self._pool,
                    actor,
                    AUDIT_ACTIONS[job.operation],
                    audit.Target("project", project.name, project.id, project.user_id),
                    "failed",
                    {"deployment": job.id, "error": error.message[:200]},
                )
            raise

    async def _outcome(self, project: Project, job: Deployment) -> Deployment:
        """Wait for a worker to end the operation `job`; its failure is raised with the
        worker's message. One no worker claims in time is withdrawn."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.claim_wait
        while True:
            current = await self._store.get(job.id)
            if current is None:  # gone with its project: deleted
                if job.operation is Operation.DELETE:
                    return job
                raise NotFoundError(f"You have no project named {project.name[:40]!r}.")
            if current.state == State.DONE:
                return current
            if current.state in (State.FAILED, State.CANCELLED):
                raise PanelError(current.error, title=f"Could not {job.operation}")
            # A job of the project held by a worker (a build being cancelled) shows one runs.
            late = current.state == State.QUEUED and loop.time() > give_up
            if late and await self._store.in_progress(project.id) is None:
                message = NO_WORKER.format(
                    what=job.operation, project=project.name, seconds=self.claim_wait
                )
                if await self._store.cancel_queued(job.id, message):
                    raise UnavailableError(message)
            await asyncio.sleep(OPERATION_POLL)

    # --- reading ------------------------------------------------------------------------------

    async def list(
        self, actor: Actor, project: str, limit: int = HISTORY_LIMIT
    ) -> list[Deployment]:
        """Newest first (stop, start and delete jobs are not deployments: left out)."""
        found = await self._project(actor, project, "read")
        return await self._store.history(found.id, limit)

    async def get(self, actor: Actor, project: str, deployment_id: int) -> Deployment:
        found = await self._project(actor, project, "read")
        return await self._get(found, deployment_id)

    async def status(self, actor: Actor, project: str) -> ProjectStatus:
        found = await self._project(actor, project, "read")
        flags = (await self._projects.deploy_flags([found.id])).get(found.id)
        if flags is None:
            raise NotFoundError(f"You have no project named {project[:40]!r}.")
        history = await self._store.history(found.id, 1)
        latest = history[0] if history else None
        live = await self._store.get(flags.live_id) if flags.live_id is not None else None
        state = project_state(latest.state if latest else None, live is not None, flags.stopped)
        return ProjectStatus(state, live, latest, self._url_for(found.name))

    async def statuses(self, actor: Actor) -> dict[str, ProjectState]:
        """The state of each of the actor's projects, by name, in two queries (for lists)."""
        actor.require("read")
        flags = await self._projects.deploy_flags_of_user(actor.owner_id)
        latest = await self._store.latest_states(list(flags))
        return {
            f.name: project_state(latest.get(project_id), f.live_id is not None, f.stopped)
            for project_id, f in flags.items()
            if actor.projects is None or f.name in actor.projects
        }

    async def build_log(
        self, actor: Actor, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        """The build log from character `offset` on, and the offset to ask for next time."""
        found = await self._project(actor, project, "logs")
        found_log = await self._store.log_from(found.id, deployment_id, offset)
        if found_log is None:
            raise NotFoundError(f"{project} has no deployment #{deployment_id}.")
        return found_log

    # --- helpers ------------------------------------------------------------------------------

    async def _project(self, actor: Actor, name: str, scope: str) -> Project:
        """The project the actor may act on with `scope`; another owner's is not found."""
        actor.require(scope)
        return await self._projects.resolve(actor, name)

    async def _get(
        self, project: Project, deployment_id: int, conn: Connection | None = None
    ) -> Deployment:
        found = await self._store.of_project(project.id, deployment_id, conn)
        if found is None or found.operation is not Operation.DEPLOY:
            raise NotFoundError(f"{project.name} has no deployment #{deployment_id}.")
        return found

    async def _live(self, project: Project) -> Deployment | None:
        flags = (await self._projects.deploy_flags([project.id])).get(project.id)
        if flags is None or flags.live_id is None:
            return None
        return await self._store.get(flags.live_id)

    async def in_progress(self, project_id: int, conn: Connection | None = None) -> int | None:
        """The id of the project's job a worker holds now (it may have read the project's
        limits already), if any; for billing, which refuses a smaller plan meanwhile."""
        return await self._store.in_progress(project_id, conn)

    async def _refuse_while_deploying(self, project: Project) -> None:
        busy = await self._store.in_progress(project.id)
        if busy is not None:
            raise ConflictError(
                f"Deployment #{busy} of {project.name} is in progress: wait for it or cancel it."
            )
