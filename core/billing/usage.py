"""A project's usage against its plan: CPU and memory now (docker stats), disk (its stored
versions plus its Docker volumes) and services running; and which of them would not fit a
smaller plan. A project without a plan is measured against the settings' defaults."""

from __future__ import annotations

from dataclasses import dataclass

from core.archives.quota import DiskRoom, mib
from core.archives.service import ArchiveService
from core.billing.plans import Plan
from core.db.pool import Connection
from core.deploy.limits import ProjectLimits, ProjectRuntime, RuntimeUsage

MiB = 1 << 20


@dataclass(frozen=True)
class Meter:
    """One bar: `used` against `limit` (None: not bounded), in `unit`."""

    label: str
    used: int
    limit: int | None
    unit: str  # "millicores", "bytes" or "services"

    @property
    def fraction(self) -> float:
        """Share of the limit in use (0 without a limit; may pass 1 for a moment)."""
        return self.used / self.limit if self.limit else 0.0

    def text(self, *, compact: bool = False) -> str:
        """ "0.12 / 1 CPU", "120.0 / 256.0 MiB", "1 / 2 services"; `compact`: "0.12/1 CPU",
        "120/256 MiB", "1/2 services" (a line of 80 columns holds four of them)."""
        if self.unit == "millicores":
            used, limit, unit = f"{self.used / 1000:.2f}", _cpus(self.limit), "CPU"
        elif self.unit == "bytes":
            if compact:
                used = f"{self.used / MiB:.0f}"
                limit = f"{self.limit / MiB:.0f}" if self.limit is not None else None
            else:
                used = mib(self.used).removesuffix(" MiB")
                limit = mib(self.limit).removesuffix(" MiB") if self.limit is not None else None
            unit = "MiB"
        else:
            used, limit, unit = str(self.used), _count(self.limit), "services"
        if limit is None:
            return f"{used} {unit} (no limit)"
        return f"{used}/{limit} {unit}" if compact else f"{used} / {limit} {unit}"


def _cpus(millicores: int | None) -> str | None:
    return f"{millicores / 1000:g}" if millicores is not None else None


def _count(value: int | None) -> str | None:
    return str(value) if value is not None else None


@dataclass(frozen=True)
class ProjectUsage:
    project: str
    plan: str  # the plan's name; "" for a project without a plan (the settings' defaults)
    cpu: Meter
    ram: Meter
    disk: Meter
    services: Meter
    archive_bytes: int
    volume_bytes: int

    @property
    def meters(self) -> tuple[Meter, Meter, Meter, Meter]:
        return (self.cpu, self.ram, self.disk, self.services)


def limits_for(plan: Plan) -> ProjectLimits:
    return ProjectLimits(
        plan=plan.name, cpu_millicores=plan.cpu_millicores, ram_mb=plan.ram_mb, pids=plan.pids,
        max_services=plan.max_services, disk_mb=plan.disk_mb,
    )  # fmt: skip


def shrinks(old: ProjectLimits, new: ProjectLimits) -> bool:
    """Does `new` give less of something current usage may hold (memory, disk, services)?"""
    return (
        new.ram_mb < old.ram_mb
        or new.max_services < old.max_services
        or (new.disk_mb is not None and (old.disk_mb is None or new.disk_mb < old.disk_mb))
    )


def misfits(usage: ProjectUsage, limits: ProjectLimits) -> list[str]:
    """Each thing the project uses now that `limits` would not hold, said for its owner."""
    problems = []
    disk = usage.disk.used
    if limits.disk_mb is not None and disk > limits.disk_mb * MiB:
        problems.append(
            f"Disk: the project uses {mib(disk)} (uploaded versions {mib(usage.archive_bytes)},"
            f" volumes {mib(usage.volume_bytes)}); {limits.plan} has {mib(limits.disk_mb * MiB)}."
            " Delete old versions or data in the app's volumes."
        )
    if usage.services.used > limits.max_services:
        problems.append(
            f"Services: {usage.services.used} are running; {limits.plan} runs at most"
            f" {limits.max_services}. Deploy a compose file with fewer services first."
        )
    if usage.ram.used > limits.memory_bytes:
        problems.append(
            f"Memory: the app uses {mib(usage.ram.used)} now; {limits.plan} has"
            f" {mib(limits.memory_bytes)}. Make it use less, or stop it first."
        )
    return problems


class UsageMeter:
    """Measures projects (without the archives or the runtime, what they hold counts 0)."""

    def __init__(self, archives: ArchiveService | None, runtime: ProjectRuntime | None) -> None:
        self._archives = archives
        self.runtime = runtime

    async def archive_bytes(self, project_id: int, conn: Connection | None = None) -> int:
        return await self._archives.stored_bytes(project_id, conn) if self._archives else 0

    async def measure(self, project_id: int, name: str, limits: ProjectLimits) -> ProjectUsage:
        runtime = (
            await self.runtime.measure(name)
            if self.runtime is not None
            else RuntimeUsage(0, 0, 0, 0)
        )
        archives = await self.archive_bytes(project_id)
        disk_limit = limits.disk_mb * MiB if limits.disk_mb is not None else None
        return ProjectUsage(
            project=name,
            plan=limits.plan,
            cpu=Meter("CPU", runtime.cpu_millicores, limits.cpu_millicores, "millicores"),
            ram=Meter("RAM", runtime.memory_bytes, limits.memory_bytes, "bytes"),
            disk=Meter("Disk", archives + runtime.volume_bytes, disk_limit, "bytes"),
            services=Meter("Services", runtime.services_running, limits.max_services, "services"),
            archive_bytes=archives,
            volume_bytes=runtime.volume_bytes,
        )

    async def disk_room(self, project_id: int, name: str, limits: ProjectLimits) -> DiskRoom:
        volumes = await self.runtime.volume_bytes(name) if self.runtime is not None else 0
        assert limits.disk_mb is not None
        return DiskRoom(
            limits.plan, limits.disk_mb * MiB, await self.archive_bytes(project_id), volumes
        )
