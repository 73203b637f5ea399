"""core.runtime.cgroups on folders laid out as the kernel lays out /sys/fs/cgroup (v1 and v2).

The integration and security suites run against this machine's real cgroup v1; these check what
is written on a v2 host, and the names, without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.runtime.cgroups import GroupLimits, ParentCgroups, app_group, build_group

LIMITS = GroupLimits(memory_bytes=64 << 20, cpus=0.5, pids=48)


def test_group_names_never_collide_between_projects() -> None:
    # Project names are DNS labels (no dots): "x-build" is not project "x"'s build group.
    assert build_group("ghst", "x") == "ghst-x.build"
    assert app_group("ghst", "x-build") == "ghst-x-build"


def test_v2_writes_the_limits_and_delegates_the_controllers(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu\n")
    parent = ParentCgroups(tmp_path).ensure("ghst-shop", LIMITS)
    assert parent == "/ghst-shop"
    group = tmp_path / "ghst-shop"
    assert (group / "memory.max").read_text() == str(64 << 20)
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "pids.max").read_text() == "48"
    # A real cgroup.subtree_control takes "+memory +pids" and keeps what it had.
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_v1_writes_memory_memsw_cpu_and_pids(tmp_path: Path) -> None:
    for controller in ("memory", "cpu", "pids"):
        (tmp_path / controller).mkdir()
    ParentCgroups(tmp_path).ensure("ghst-shop", LIMITS)
    assert (tmp_path / "memory/ghst-shop/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "cpu/ghst-shop/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "cpu/ghst-shop/cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "pids/ghst-shop/pids.max").read_text() == "48"


def test_names_that_leave_the_root_are_refused(tmp_path: Path) -> None:
    for name in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            ParentCgroups(tmp_path).ensure(name, LIMITS)
