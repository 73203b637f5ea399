"""Environment variables of a project: set and unset by its owner, applied when containers are
next created (deploy, restart, rollback). Values are shown masked in lists."""

from __future__ import annotations

from dataclasses import dataclass

from core.db import Pool
from core.projects import ProjectService


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


class EnvService:
    """Interface first: being implemented."""

    def __init__(self, pool: Pool, projects: ProjectService) -> None:
        self._pool = pool
        self._projects = projects

    async def list(self, user_id: int, project: str) -> list[EnvVar]:
        raise NotImplementedError

    async def set(self, user_id: int, project: str, name: str, value: str) -> EnvVar:
        raise NotImplementedError

    async def unset(self, user_id: int, project: str, name: str) -> None:
        raise NotImplementedError

    async def as_mapping(self, project_id: int) -> dict[str, str]:
        """For the deployer: the project's variables, no ownership check (it owns nothing)."""
        raise NotImplementedError
