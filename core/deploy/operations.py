"""What a worker does for the stop, start and delete jobs of the deploy queue.

The dashboard's process queues these (core.deploy.service) and needs no Docker; the worker
that claims one acts on the project's live deployment as it is then, through the runtime (the
deployer), and records the project's new flags through the projects' owner.
"""

from __future__ import annotations

import logging

from core.actor import Actor
from core.archives.service import ArchiveService
from core.deploy.model import Deployment, Operation
from core.deploy.service import Runtime
from core.deploy.store import DeploymentStore
from core.errors import ValidationError
from core.projects.service import ProjectService

log = logging.getLogger(__name__)


class Operations:
    def __init__(
        self,
        store: DeploymentStore,
        projects: ProjectService,
        archives: ArchiveService,
        runtime: Runtime,
    ) -> None:
        self._store = store
        self._projects = projects
        self._archives = archives
        self._runtime = runtime
        # Who acts when a worker carries a job out: the panel, for the project's owner.
        self.actor = Actor.system("worker").acting_from("scheduler")

    async def run(self, job: Deployment) -> None:
        """Carry out `job`, or raise a PanelError whose message the user reads."""
        log.info("%s: %s of %s (job #%s)", self.actor.label, job.operation, job.project, job.id)
        if job.operation is Operation.DELETE:
            await self._delete(job)
            return
        flags = (await self._projects.deploy_flags([job.project_id])).get(job.project_id)
        live = await self._store.get(flags.live_id) if flags and flags.live_id else None
        if live is None:
            raise ValidationError(
                f"{job.project} is not running: there is nothing to {job.operation}."
            )
        if job.operation is Operation.STOP:
            await self._runtime.stop(live)
            await self._projects.set_stopped(job.project_id, True)
        elif job.operation is Operation.START:
            await self._runtime.start(live)
            await self._projects.set_stopped(job.project_id, False)
        else:
            raise ValueError(f"not an operation: {job.operation}")

    async def _delete(self, job: Deployment) -> None:
        """Remove what runs (containers, images, network, vhost), then the project with its
        versions; its rows, this job's included, go with it."""
        project = await self._projects.by_id(job.project_id)
        if project is None:  # deleted already
            return
        await self._runtime.remove_project(project)
        await self._archives.delete_project(self.actor, project.name, project.name)
