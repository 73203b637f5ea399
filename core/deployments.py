"""Deployments: one record per attempt to run a project's archive version, queued in PostgreSQL.

States: queued -> building -> starting -> running, or failed / cancelled; a running deployment
becomes superseded when another one takes its place (its image stays for rollback). A queued
deployment that a newer one replaces before it started is superseded too.

Front ends call `DeploymentService`; workers (`core.worker`) claim queued jobs and run them
with `core.deployer`. Every method takes the acting user's id: another user's project or
deployment is "not found", exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

State = Literal["queued", "building", "starting", "running", "failed", "cancelled", "superseded"]
Reason = Literal["deploy", "redeploy", "rollback", "restart"]
ACTIVE_STATES: tuple[State, ...] = ("queued", "building", "starting")
# What a project looks like from outside.
ProjectState = Literal["new", "deploying", "running", "stopped", "failed"]


@dataclass(frozen=True)
class Deployment:
    id: int
    project_id: int
    project: str
    user_id: int
    archive_name: str  # e.g. "v3-app.zip"; kept when the archive is deleted
    reason: Reason
    source_id: int | None  # the deployment whose image a rollback or restart reuses
    kind: Literal["dockerfile", "compose"] | None
    state: State
    error: str
    image: str | None
    port: int | None  # host port on 127.0.0.1
    app_port: int | None  # port inside the container
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

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


class DeploymentService:
    """Interface first (this file is being filled in); see the module docstring."""

    async def deploy(self, user_id: int, project: str, archive: str | None = None) -> Deployment:
        """Queue a build of `archive` ("v3-app.zip"; default: the newest version)."""
        raise NotImplementedError

    async def redeploy(self, user_id: int, project: str) -> Deployment:
        """Build the live deployment's archive again."""
        raise NotImplementedError

    async def rollback(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        """Queue a deployment that runs an earlier successful deployment's image (no build)."""
        raise NotImplementedError

    async def restart(self, user_id: int, project: str) -> Deployment:
        """New containers from the live image with the current env vars, switched without downtime."""
        raise NotImplementedError

    async def stop(self, user_id: int, project: str) -> None:
        raise NotImplementedError

    async def start(self, user_id: int, project: str) -> None:
        raise NotImplementedError

    async def cancel(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        raise NotImplementedError

    async def list(self, user_id: int, project: str, limit: int = 50) -> list[Deployment]:
        """Newest first."""
        raise NotImplementedError

    async def get(self, user_id: int, project: str, deployment_id: int) -> Deployment:
        raise NotImplementedError

    async def status(self, user_id: int, project: str) -> ProjectStatus:
        raise NotImplementedError

    async def build_log(
        self, user_id: int, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        """The build log from character `offset` on, and the offset to ask for next time."""
        raise NotImplementedError

    async def statuses(self, user_id: int) -> dict[str, ProjectState]:
        """The state of each of the user's projects, by name, in one query (for lists)."""
        raise NotImplementedError

    def runtime_logs(self, user_id: int, project: str, tail: int = 200) -> AsyncIterator[str]:
        """The live app's log lines (last `tail`, then new ones as they come) until closed."""
        raise NotImplementedError
