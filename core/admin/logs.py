"""Logs for the admin app: every account's build logs and live app logs, for admins and
operators alike (reading a log changes nothing).

The deployments service's reads know a project's owner and admins, not operators; so each
call here checks that its actor is staff, then reads as the system. Only reads are offered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.actor import Actor
from core.audit.entries import Target
from core.audit.service import refused
from core.db.pool import Pool
from core.deploy.model import Deployment
from core.deploy.service import DeploymentService, ProjectStatus
from core.errors import PermissionDenied

READER = Actor.system("admin-logs")


class StaffLogs:
    """The log reads of `DeploymentService`, with the same signatures, for staff actors."""

    def __init__(self, deployments: DeploymentService, pool: Pool) -> None:
        self._deployments = deployments
        self._pool = pool

    async def _admit(self, actor: Actor, project: str) -> None:
        """Staff only; a refused attempt is audited as `admin.logs` on the project."""
        try:
            actor.require_staff()
        except PermissionDenied as error:
            await refused(self._pool, actor, "admin.logs", Target("project", project), error)
            raise

    async def get(self, actor: Actor, project: str, deployment_id: int) -> Deployment:
        await self._admit(actor, project)
        return await self._deployments.get(READER, project, deployment_id)

    async def status(self, actor: Actor, project: str) -> ProjectStatus:
        await self._admit(actor, project)
        return await self._deployments.status(READER, project)

    async def build_log(
        self, actor: Actor, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        await self._admit(actor, project)
        return await self._deployments.build_log(READER, project, deployment_id, offset)

    async def runtime_logs(self, actor: Actor, project: str, tail: int = 200) -> AsyncIterator[str]:
        await self._admit(actor, project)
        stream = self._deployments.runtime_logs(READER, project, tail)
        try:
            async for line in stream:
                yield line
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
