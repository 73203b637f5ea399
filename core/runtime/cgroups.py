"""Parent cgroups: limits that hold for a project as a whole, not for each of its containers.

Docker's limits apply per container, so a compose file with 40 services would get 40 times the
plan. Each project's containers (and, separately, its builds' RUN steps) are therefore started
under a parent cgroup that the panel makes and limits itself (docker `cgroup_parent`):

    /<instance>-<project>         the app's containers: the plan's memory, CPU and pids
    /<instance>-<project>.build   the RUN steps of its builds: the build limits

(project names are DNS labels, without dots, so no project's group is another's build group.)
The kernel counts every process and page of the children against the parent, so no number of
services or forks gets past it. This works with dockerd's cgroupfs driver, on cgroup v1 (one
folder per controller) and v2 (one unified folder); with the systemd driver, or without write
access to /sys/fs/cgroup, `ensure` raises UnavailableError saying so.

All methods block (file system writes): call them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import UnavailableError

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class GroupLimits:
    memory_bytes: int
    cpus: float  # 0.5 = half a CPU
    pids: int


def app_group(instance: str, project: str) -> str:
    return f"{instance}-{project}"


def build_group(instance: str, project: str) -> str:
    return f"{instance}-{project}.build"


class ParentCgroups:
    """Makes, limits and removes parent cgroups; see the module docstring."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root

    @property
    def unified(self) -> bool:
        """cgroup v2 (one hierarchy) rather than v1 (a folder per controller)."""
        return (self.root / "cgroup.controllers").is_file()

    def ensure(self, name: str, limits: GroupLimits) -> str:
        """Make (or update) the group `name` with these limits; its docker `cgroup_parent`."""
        _check_name(name)
        try:
            if self.unified:
                self._ensure_v2(name, limits)
            else:
                self._ensure_v1(name, limits)
        except OSError as error:
            raise UnavailableError(
                f"The panel cannot set the project's limits in {self.root} ({error.strerror}): "
                "it needs write access to the host's cgroups (run it as root on the host, or "
                "mount /sys/fs/cgroup read-write)."
            ) from error
        return f"/{name}"

    def remove(self, name: str) -> None:
        """Remove the group (once its containers are gone); a missing or busy one is left."""
        _check_name(name)
        folders = (
            [self.root / name]
            if self.unified
            else [self.root / controller / name for controller in _v1_all(self.root)]
        )
        for folder in folders:
            _remove_tree(folder)

    def exists(self, name: str) -> bool:
        _check_name(name)
        if self.unified:
            return (self.root / name).is_dir()
        return any((self.root / c / name).is_dir() for c in _v1_all(self.root))

    # -- v1: memory, cpu and pids are folders of their own

    def _ensure_v1(self, name: str, limits: GroupLimits) -> None:
        for controller in V1_CONTROLLERS:
            if not (self.root / controller).is_dir():
                raise OSError(errno.ENOENT, f"no {controller} controller", str(self.root))
        memory = self.root / "memory" / name
        memory.mkdir(exist_ok=True)
        _set_memory_v1(memory, limits.memory_bytes)
        cpu = self.root / "cpu" / name
        cpu.mkdir(exist_ok=True)
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(_quota(limits.cpus)))
        pids = self.root / "pids" / name
        pids.mkdir(exist_ok=True)
        _write(pids / "pids.max", str(limits.pids))

    # -- v2: one folder; the root must delegate memory, cpu and pids to its children

    def _ensure_v2(self, name: str, limits: GroupLimits) -> None:
        enabled = (self.root / "cgroup.subtree_control").read_text().split()
        missing = [c for c in V1_CONTROLLERS if c not in enabled]
        if missing:
            _write(self.root / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        group = self.root / name
        group.mkdir(exist_ok=True)
        _write(group / "memory.max", str(limits.memory_bytes))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")  # as v1's memsw: memory plus swap
        _write(group / "cpu.max", f"{_quota(limits.cpus)} {CPU_PERIOD_US}")
        _write(group / "pids.max", str(limits.pids))


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or "\x00" in name:
        raise ValueError(f"invalid cgroup name {name!r}")


def _quota(cpus: float) -> int:
    return max(1000, int(cpus * CPU_PERIOD_US))


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _set_memory_v1(folder: Path, limit: int) -> None:
    """memory.limit_in_bytes and, with swap accounting, memsw (memory plus swap) to `limit`.

    The kernel keeps memsw >= limit at every moment: lowering needs limit first, raising needs
    memsw first; one of the two orders works, so try limit, memsw, then limit again.
    """
    memsw = folder / "memory.memsw.limit_in_bytes"
    try:
        _write(folder / "memory.limit_in_bytes", str(limit))
        first_failed = False
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        first_failed = True
    if memsw.exists():
        _write(memsw, str(limit))
    if first_failed:
        _write(folder / "memory.limit_in_bytes", str(limit))


def _v1_all(root: Path) -> list[str]:
    """Every v1 hierarchy folder (docker makes the group under each one, not only ours)."""
    with contextlib.suppress(OSError):
        return sorted(
            entry.name
            for entry in root.iterdir()
            if entry.is_dir() and not entry.is_symlink()  # "unified" too: runc uses it
        )
    return []


def _remove_tree(folder: Path) -> None:
    """rmdir the group and any empty children left in it (a cgroup folder cannot be rm -r'd)."""
    if not folder.is_dir():
        return
    for current, children, _ in os.walk(folder, topdown=False):
        for child in children:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(current, child))
    with contextlib.suppress(OSError):
        os.rmdir(folder)
