"""The limits a project runs with: its plan's, given by billing (which sits above deploy and
attaches a `LimitsSource` to the deployer), or the settings' defaults for a project without a
plan (made before billing: it keeps the defaults it always had and pays nothing).

They hold for the project as a whole (its parent cgroup) and for each container in it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from core.runtime.cgroups import GroupLimits
from core.runtime.engine import Limits
from core.settings import Settings

MiB = 1 << 20


@dataclass(frozen=True)
class ProjectLimits:
    plan: str  # the plan's name as users see it ("" for the settings' defaults)
    cpu_millicores: int
    ram_mb: int
    pids: int
    max_services: int
    disk_mb: int | None  # None: not bounded per project (no plan)

    @property
    def memory_bytes(self) -> int:
        return self.ram_mb * MiB

    @property
    def cpus(self) -> float:
        return self.cpu_millicores / 1000

    def group(self) -> GroupLimits:
        """The project's parent cgroup."""
        return GroupLimits(self.memory_bytes, self.cpus, self.pids)

    def container(self) -> Limits:
        """Each container: never more than the whole project."""
        return Limits(
            memory_bytes=self.memory_bytes, nano_cpus=self.cpu_millicores * 1_000_000,
            pids=self.pids,
        )  # fmt: skip


# A project's limits by its id; None when it has no plan.
LimitsSource = Callable[[int], Awaitable[ProjectLimits | None]]


def default_limits(settings: Settings) -> ProjectLimits:
    return ProjectLimits(
        plan="",
        cpu_millicores=round(settings.app_cpus * 1000),
        ram_mb=settings.app_memory_mb,
        pids=settings.app_pids,
        max_services=settings.compose_max_services,
        disk_mb=None,
    )


@dataclass(frozen=True)
class RuntimeUsage:
    """What a project's containers use now (docker stats, dockerd's disk usage)."""

    cpu_millicores: int
    memory_bytes: int
    services_running: int
    volume_bytes: int


class ProjectRuntime(Protocol):
    """What billing needs of the runtime: new limits at once, and the usage they must fit."""

    async def apply_limits(self, project: str, limits: ProjectLimits) -> None: ...

    async def measure(self, project: str) -> RuntimeUsage: ...

    async def volume_bytes(self, project: str) -> int: ...
