"""The worker side of the deployments queue: claim with a lease, renew it, finish.

A worker claims a queued deployment whose project has nothing in progress with
`FOR UPDATE SKIP LOCKED`, so workers never take the same job. Claims are fair between users:
the job claimed is the oldest of the users with the fewest jobs in progress, and no user has
more than `per_user` jobs in progress at once (claims take a short advisory lock, so that cap
holds across workers), so one tenant queueing many projects cannot starve the others. While it
works it renews a lease; a worker that dies stops renewing, and `reap_expired` (run by every
worker) fails the job once the lease is over, so nothing stays "building" forever.
Every write is conditional on the worker still holding the job: a worker whose lease was
reaped cannot overwrite what happened since. Stop, start and delete jobs are claimed the same
way (they go to "working", not "building"). The SQL is in core.deploy.store.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.db.pool import Connection, Pool
from core.db.unit import transaction
from core.deploy.model import SUCCEEDED_STATES, Deployment, Kind, State
from core.deploy.store import DeploymentStore
from core.projects.service import ProjectService

# A build log is kept whole up to this many bytes (GHST_BUILD_LOG_MAX_BYTES); beyond, it is cut
# there and ends with a notice.
MAX_LOG_BYTES = 2_000_000
LOG_TRUNCATED = "\n[the log is longer than the panel keeps: the rest was not kept]\n"
WORKER_DIED = "The worker running this deployment stopped before it finished (its lease expired)."
REQUEUED = "\n[the panel was restarting: this deployment goes back to the queue]\n"


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
        *,
        projects: ProjectService,
    ) -> None:
        self._pool = pool
        self._store = DeploymentStore(pool)
        self._projects = projects
        self._lease = lease_seconds
        self._per_user = max(1, per_user)
        self.log_max_bytes = max(log_max_bytes, 2 * len(LOG_TRUNCATED))

    async def claim(self, worker: str, *, operations_only: bool = False) -> Deployment | None:
        """The next job for `worker` (with `operations_only`: a stop, start or delete job)."""
        return await self._store.claim(
            worker, self._lease, self._per_user, operations_only=operations_only
        )

    async def renew(self, deployment_id: int, worker: str) -> Renewal:
        cancel_requested = await self._store.renew(deployment_id, worker, self._lease)
        if cancel_requested is None:
            raise LeaseLost(deployment_id)
        return Renewal(cancel_requested)

    async def append_log(self, deployment_id: int, text: str) -> None:
        """Add `text` to the log, which never grows past `log_max_bytes` (notice included)."""
        async with transaction(self._pool) as conn:
            await self._append_log(conn, deployment_id, text)

    async def _append_log(self, conn: Connection, deployment_id: int, text: str) -> None:
        size = await self._store.log_size_for_update(conn, deployment_id)
        if size is None:
            return
        addition = _within(text, size, self.log_max_bytes)
        if addition:
            await self._store.append_log(conn, deployment_id, addition)

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
        state: State | None = None,
    ) -> None:
        """Note what the job made so far (each field only when given)."""
        recorded = await self._store.record(
            deployment_id,
            worker,
            kind=kind,
            image=image,
            stack=stack,
            port=port,
            app_port=app_port,
            state=state,
        )
        if not recorded:
            raise LeaseLost(deployment_id)

    async def go_live(
        self, deployment_id: int, worker: str, log_text: str = ""
    ) -> Deployment | None:
        """Make the deployment the project's live one; return the one it replaces, if any.
        `log_text` ends the log in the same transaction: whoever sees it running reads it all."""
        async with transaction(self._pool) as conn:
            project_id = await self._store.mark_running(conn, deployment_id, worker)
            if project_id is None:
                raise LeaseLost(deployment_id)
            if log_text:
                await self._append_log(conn, deployment_id, log_text)
            previous_id = await self._projects.make_live(conn, project_id, deployment_id)
            previous = await self._store.get(previous_id, conn) if previous_id else None
            if previous is not None:
                await self._store.supersede_running(conn, previous.id)
        return previous

    async def went_live(self, deployment_id: int, worker: str) -> bool:
        """Did `worker` take this job live? (Its lease ends there, so renewing it fails.)"""
        return await self._store.state_of(deployment_id, worker) in SUCCEEDED_STATES

    async def finish(self, deployment_id: int, worker: str, state: State, error: str) -> bool:
        """End a job that did not go live (done, failed or cancelled); False if it was not ours."""
        return await self._store.finish(deployment_id, worker, state, error)

    async def requeue(self, deployment_id: int, worker: str) -> bool:
        """Give a job back (the worker is shutting down): another worker starts it afresh."""
        return await self._store.requeue(
            deployment_id, worker, REQUEUED, self.log_max_bytes - len(LOG_TRUNCATED)
        )

    async def reap_expired(self) -> list[Deployment]:
        """Fail jobs whose worker stopped renewing; the caller cleans up what they left."""
        return await self._store.fail_expired(WORKER_DIED)

    async def prune_history(self, project_id: int, keep: int) -> int:
        """Delete the project's deployments (rows and logs) beyond the newest `keep`, except
        the live one, those in progress, those whose image is kept for a rollback, and those a
        kept deployment reuses the image of. Returns how many were deleted."""
        flags = (await self._projects.deploy_flags([project_id])).get(project_id)
        if flags is None:  # deleted: its rows went with it
            return 0
        return await self._store.prune(project_id, keep, flags.live_id)

    async def forget_image(self, deployment_id: int) -> None:
        """The image was pruned: the deployment can no longer be rolled back to."""
        await self._store.forget_image(deployment_id)


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
