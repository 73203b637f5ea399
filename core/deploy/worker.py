"""The deployment worker: claims queued deployments and runs them, `builds_at_once` at a time.

It wakes on NOTIFY from the queue (a deploy starts within milliseconds) and polls as well, in
case a notification was missed. Each job has a heartbeat that renews its lease and passes on a
cancel request; every worker also reaps jobs whose lease ran out (their worker died) and cleans
up what they left, and looks every `live_check_seconds` for live deployments whose containers
are gone, queueing a heal for them (core.deploy.live_check). Stopping is graceful (procrastinate's way): no new claims, running jobs get
a bounded wait, then they are cancelled, cleaned up and put back in the queue.

Every job has a total deadline (`deploy_timeout`), whatever it builds. However a job ends, its
user is told the real reason: storing that reason is retried, and nothing a job raises is left
unretrieved in its task. Once a job ended, its project's history beyond `keep_deployments` rows
is pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from core.db.pool import Pool
from core.deploy.build_log import JobLog
from core.deploy.model import Deployment, Operation, State
from core.deploy.operations import Operations
from core.deploy.pipeline import Deployer
from core.deploy.queue import DeploymentQueue, LeaseLost
from core.deploy.store import NOTIFY_CHANNEL
from core.errors import PanelError
from core.log_text import clean_log_text

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
SWEEP_SECONDS = 600.0  # how often leftover containers (after a crash) are looked for
CANCELLED = "Cancelled while it was being built."
INTERNAL = "The deployment failed because of an error in the panel; the operator has the details."
DEADLINE = (
    "The deployment took longer than {seconds:g} s, the most one deployment may take on this"
    " panel, and was stopped."
)
FINISH_ATTEMPTS = 5  # tries to record how a job ended before its lease runs out
# Stop, start and delete jobs one worker carries out at once, besides its builds.
OPERATIONS_AT_ONCE = 4
MAX_REASON = 8000  # characters of a failure's reason kept (it may quote the app's output)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Job:
    deployment: Deployment
    task: asyncio.Task[None] | None = None
    # Why the job's task was cancelled, if it was: decides how the job ends.
    stop_reason: Literal["cancel", "lease", "shutdown"] | None = None
    finishing: bool = False  # past the point where cancelling would help
    heartbeat: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def is_deploy(self) -> bool:
        return self.deployment.operation is Operation.DEPLOY


class DeploymentWorker:
    def __init__(
        self,
        pool: Pool,
        dsn: str,
        queue: DeploymentQueue,
        deployer: Deployer,
        *,
        operations: Operations,
        concurrency: int = 1,
        lease_seconds: float = 30.0,
        shutdown_grace: float = 10.0,
        live_check_seconds: float = 30.0,
        deploy_timeout: float = 1800.0,
        keep_deployments: int = 20,
        name: str | None = None,
        chores: Sequence[tuple[float, Callable[[], Coroutine[Any, Any, None]]]] = (),
    ) -> None:
        self.name = name or worker_name()
        self._pool = pool
        self._dsn = dsn
        self._queue = queue
        self._deployer = deployer
        # Stop, start and delete jobs: the worker acts for the panel (Actor.system("worker")).
        self._operations = operations
        self._concurrency = max(1, concurrency)
        self._lease = lease_seconds
        self._grace = shutdown_grace
        self._live_check = max(0.1, live_check_seconds)  # 0 would look on every wake-up
        self._deadline = deploy_timeout
        # Periodic jobs of other packages (every N seconds), e.g. billing's daily charge: each
        # catches its own errors. The worker runs them without knowing what they are.
        self._chores = [(max(1.0, every), chore) for every, chore in chores]
        self._keep = keep_deployments
        self._jobs: dict[int, Job] = {}
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then stop gracefully."""
        listener = await self._listen()
        log.info("deployment worker %s started (%d at once)", self.name, self._concurrency)
        next_reap = next_sweep = next_live_check = 0.0
        loop = asyncio.get_running_loop()
        next_chores = [0.0] * len(self._chores)
        # A chore runs beside the loop (a day's charge can take seconds): claims go on meanwhile.
        chore_tasks: list[asyncio.Task[None] | None] = [None] * len(self._chores)
        try:
            while not stop.is_set():
                if loop.time() >= next_reap:
                    await self._reap()
                    next_reap = loop.time() + max(0.5, self._lease / 2)
                if loop.time() >= next_sweep:
                    await self._sweep()
                    next_sweep = loop.time() + SWEEP_SECONDS
                if loop.time() >= next_live_check:
                    await self._check_live()
                    next_live_check = loop.time() + self._live_check
                for index, (every, chore) in enumerate(self._chores):
                    previous = chore_tasks[index]
                    if loop.time() >= next_chores[index] and (previous is None or previous.done()):
                        chore_tasks[index] = asyncio.create_task(chore())
                        next_chores[index] = loop.time() + every
                await self._claim(stop)
                self._wake.clear()
                stopping = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {stopping, woken}, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                stopping.cancel()
                woken.cancel()
        finally:
            chores = [task for task in chore_tasks if task is not None]
            if chores:  # each is one transaction: it commits or rolls back whole
                await asyncio.wait(chores, timeout=self._grace)
                for task in chores:
                    task.cancel()
                await asyncio.gather(*chores, return_exceptions=True)
            await self._shutdown()
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            log.info("deployment worker %s stopped", self.name)

    async def _claim(self, stop: asyncio.Event) -> None:
        """Take jobs while there is room: builds up to `concurrency`, and stop, start and
        delete jobs beside them (short, and a user waits for each), up to OPERATIONS_AT_ONCE."""
        while not stop.is_set():
            builds = sum(1 for job in self._jobs.values() if job.is_deploy)
            operations = len(self._jobs) - builds
            if operations >= OPERATIONS_AT_ONCE:
                return
            try:
                job = await self._queue.claim(
                    self.name, operations_only=builds >= self._concurrency
                )
            except PanelError as error:  # database down: try again later
                log.warning("cannot claim deployments: %s", error)
                return
            if job is None:
                return
            self._start(job)

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=10)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            log.warning("no LISTEN connection (%s): polling every %.0f s", error, POLL_SECONDS)
            return None
        return conn

    def _start(self, deployment: Deployment) -> None:
        job = Job(deployment)
        self._jobs[deployment.id] = job
        job.task = asyncio.get_running_loop().create_task(
            self._run_job(job), name=f"deployment-{deployment.id}"
        )
        job.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job))

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                renewal = await self._queue.renew(job.deployment.id, self.name)
            except LeaseLost:
                # Going live ends the lease too: the job is finishing, not taken away.
                if not await self._went_live(job):
                    self._interrupt(job, "lease")
                return
            except PanelError as error:
                log.warning("cannot renew the lease of #%s: %s", job.deployment.id, error)
                continue
            if renewal.cancel_requested:
                self._interrupt(job, "cancel")
                return

    def _interrupt(self, job: Job, reason: Literal["cancel", "lease", "shutdown"]) -> None:
        if job.finishing or job.task is None or job.task.done():
            return
        if job.stop_reason is None:
            job.stop_reason = reason
            job.task.cancel()

    async def _run_job(self, job: Job) -> None:
        deployment = job.deployment
        joblog = JobLog(self._queue, deployment.id)
        joblog.step(f"Deployment #{deployment.id} of {deployment.project} taken by {self.name}")
        outcome: tuple[State, str] | None = None
        deadline = asyncio.timeout(self._deadline)
        try:
            async with deadline:
                if deployment.operation is Operation.DEPLOY:
                    await self._deployer.deploy(deployment, self.name, joblog)
                else:
                    await self._operations.run(deployment)
                    outcome = (State.DONE, "")
        except TimeoutError:
            if not deadline.expired():  # a timeout of the panel's own that nothing explained
                log.exception("deployment %s failed", deployment.id)
                outcome = (State.FAILED, INTERNAL)
            else:
                outcome = (State.FAILED, DEADLINE.format(seconds=self._deadline))
        except asyncio.CancelledError:
            if job.stop_reason is None:  # cancelled from outside the worker: treat as shutdown
                job.stop_reason = "shutdown"
            outcome = (State.CANCELLED, CANCELLED)
        except LeaseLost:
            job.stop_reason = "lease"
        except PanelError as error:
            outcome = (State.FAILED, _reason(error.message))
        except Exception:
            log.exception("deployment %s failed", deployment.id)
            outcome = (State.FAILED, INTERNAL)
        finally:
            job.finishing = True
            if job.heartbeat is not None:
                job.heartbeat.cancel()
        try:
            ended = outcome is not None or job.stop_reason is not None
            if ended and await self._went_live(job):
                # The interrupt came after the switch (which is never cut in half): it is live.
                log.info("deployment %s went live before it could be stopped", deployment.id)
                job.stop_reason, outcome = None, None
            if outcome is not None or job.stop_reason is not None:
                await self._end(job, joblog, outcome)
        except Exception:  # never left in the task: the reaper fails the job if it must
            log.exception("could not end deployment %s", deployment.id)
        finally:
            await joblog.close()
            self._jobs.pop(deployment.id, None)
            self._wake.set()
        await self._prune_history(deployment)

    async def _end(self, job: Job, joblog: JobLog, outcome: tuple[State, str] | None) -> None:
        deployment = job.deployment
        if outcome is not None and job.stop_reason != "lease" and outcome[0] != State.DONE:
            joblog.step(f"{outcome[0].capitalize()}: {outcome[1]}")
        if deployment.operation is Operation.DEPLOY:
            try:
                await self._deployer.discard(deployment)
            except Exception:
                log.exception("could not clean up after deployment %s", deployment.id)
        if job.stop_reason == "lease":
            log.warning("deployment %s was taken away (lease lost)", deployment.id)
        elif job.stop_reason == "shutdown":
            await joblog.close()
            if not await self._queue.requeue(deployment.id, self.name):
                await self._queue.finish(deployment.id, self.name, State.CANCELLED, CANCELLED)
        elif outcome is not None:
            await joblog.close()  # the whole log is stored before the state says it ended
            await self._finish(deployment, *outcome)

    async def _finish(self, deployment: Deployment, state: State, error: str) -> None:
        """Record how the job ended, retrying while the database is unreachable, so the user
        reads the real reason rather than the reaper's "its worker stopped"."""
        for attempt in range(FINISH_ATTEMPTS):
            try:
                await self._queue.finish(deployment.id, self.name, state, error)
                return
            except PanelError as failure:
                log.warning("cannot record the end of #%s: %s", deployment.id, failure)
            except Exception:  # the reason itself was refused: say less, but say it ended
                log.exception("cannot record the end of #%s (%r)", deployment.id, error)
                error = INTERNAL
            await asyncio.sleep(min(self._lease / 3, 2.0**attempt) / 2)
        log.error("gave up recording the end of #%s (%s)", deployment.id, error)

    async def _prune_history(self, deployment: Deployment) -> None:
        try:
            await self._queue.prune_history(deployment.project_id, self._keep)
        except Exception as error:  # the next job of the project prunes it
            log.warning("cannot prune the deployments of %s: %s", deployment.project, error)

    async def _went_live(self, job: Job) -> bool:
        try:
            return await self._queue.went_live(job.deployment.id, self.name)
        except PanelError as error:  # cannot tell: the clean-up checks again before removing
            log.warning("cannot read the state of #%s: %s", job.deployment.id, error)
            return False

    async def _reap(self) -> None:
        try:
            reaped = await self._queue.reap_expired()
        except PanelError as error:
            log.warning("cannot reap expired deployments: %s", error)
            return
        for deployment in reaped:
            if deployment.operation is not Operation.DEPLOY:
                continue  # made nothing to clean up
            log.warning("deployment %s: its worker died; cleaning up", deployment.id)
            try:
                await self._deployer.discard(deployment)
            except Exception:
                log.exception("could not clean up after deployment %s", deployment.id)

    async def _sweep(self) -> None:
        try:
            await self._deployer.confine_running()
        except PanelError as error:
            log.warning("cannot restore the projects' limits: %s", error)
        except Exception:
            log.exception("restoring the projects' limits failed")
        try:
            await self._deployer.sweep()
        except PanelError as error:
            log.warning("cannot look for leftover containers: %s", error)
        except Exception:
            log.exception("looking for leftover containers failed")

    async def _check_live(self) -> None:
        try:
            await self._deployer.check_live()
        except PanelError as error:  # dockerd or the database down: look again later
            log.warning("cannot check the live deployments' containers: %s", error)
        except Exception:
            log.exception("checking the live deployments' containers failed")

    async def _shutdown(self) -> None:
        running = [job.task for job in self._jobs.values() if job.task is not None]
        if running:
            log.info("waiting up to %.0f s for %d deployment(s)", self._grace, len(running))
            await asyncio.wait(running, timeout=self._grace)
        for job in list(self._jobs.values()):
            self._interrupt(job, "shutdown")
        remaining = [job.task for job in self._jobs.values() if job.task is not None]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)
        await self._deployer.close()


def _reason(message: str) -> str:
    """A failure's message as stored and shown: clean text (it may quote the tenant's output),
    cut to MAX_REASON characters."""
    text = clean_log_text(message)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
