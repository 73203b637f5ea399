"""A project's usage against its plan, as numbers and bars: what a smaller plan would not hold,
how each meter reads, how the bars fill and colour (no services needed)."""

from __future__ import annotations

from core.billing.usage import Meter, ProjectUsage, misfits, shrinks
from core.deploy.limits import ProjectLimits
from core.runtime.engine import _usage
from tui.widgets.usage_bars import bar, bar_width, level, one_line, stacked

MiB = 1 << 20


def limits(ram_mb: int = 256, services: int = 2, disk_mb: int | None = 256) -> ProjectLimits:
    return ProjectLimits("Small", 250, ram_mb, 256, services, disk_mb)


def usage(ram: int = 100 * MiB, disk: int = 50 * MiB, services: int = 1) -> ProjectUsage:
    return ProjectUsage(
        "shop", "Big",
        Meter("CPU", 120, 1000, "millicores"), Meter("RAM", ram, 4096 * MiB, "bytes"),
        Meter("Disk", disk, 1024 * MiB, "bytes"), Meter("Services", services, 5, "services"),
        archive_bytes=disk // 2, volume_bytes=disk - disk // 2,
    )  # fmt: skip


def test_usage_that_fits_has_no_misfits_and_each_overflow_is_named() -> None:
    assert misfits(usage(), limits()) == []
    problems = misfits(usage(ram=300 * MiB, disk=400 * MiB, services=3), limits())
    assert [problem.split(":")[0] for problem in problems] == ["Disk", "Services", "Memory"]
    assert "uploaded versions 200.0 MiB, volumes 200.0 MiB" in problems[0]
    assert "3 are running; Small runs at most 2" in problems[1]
    assert "uses 300.0 MiB now; Small has 256.0 MiB" in problems[2]


def test_only_a_plan_with_less_memory_disk_or_services_needs_a_measurement() -> None:
    assert not shrinks(limits(), limits(ram_mb=512, services=3, disk_mb=512))
    assert shrinks(limits(), limits(ram_mb=128))
    assert shrinks(limits(), limits(services=1))
    assert shrinks(limits(disk_mb=None), limits())  # no bound before, one now


def test_meters_read_in_their_units() -> None:
    assert Meter("CPU", 120, 1000, "millicores").text() == "0.12 / 1 CPU"
    assert Meter("RAM", 100 * MiB, 256 * MiB, "bytes").text() == "100.0 / 256.0 MiB"
    assert Meter("Services", 1, 2, "services").text() == "1 / 2 services"
    assert Meter("Disk", 3 * MiB, None, "bytes").text() == "3.0 MiB (no limit)"
    assert Meter("RAM", 100 * MiB, 256 * MiB, "bytes").text(compact=True) == "100/256 MiB"
    assert Meter("CPU", 120, 250, "millicores").text(compact=True) == "0.12/0.25 CPU"


def test_bars_fill_and_colour_with_the_share_used() -> None:
    assert bar(0.5, 10) == "█████░░░░░"
    assert bar(3.0, 4) == "████"  # past the limit for a moment: full, never longer
    assert level(Meter("RAM", 95, 100, "bytes")) == "$text-error"
    assert level(Meter("RAM", 75, 100, "bytes")) == "$text-warning"
    assert level(Meter("RAM", 10, 100, "bytes")) == "$text-success"
    assert level(Meter("Disk", 10, None, "bytes")) == "$text-muted"


def test_one_line_fits_80_columns_and_drops_the_bars_first() -> None:
    narrow = one_line(usage(), 78).plain
    assert len(narrow) <= 78 and "█" not in narrow and "░" not in narrow
    assert narrow == "Big · CPU 0.12/1 CPU · RAM 100/4096 MiB · Disk 50/1024 MiB · 1/5 services"
    assert bar_width(200) == 10 and "█" in one_line(usage(), 200).plain
    assert stacked(usage(), 80).plain.splitlines()[0] == "shop · Big"


def test_docker_stats_read_as_docker_prints_them() -> None:
    sample = {
        "memory_stats": {"usage": 50 * MiB, "stats": {"total_inactive_file": 10 * MiB}},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000},
            "system_cpu_usage": 20_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
    }
    measured = _usage(sample)
    assert measured.memory_bytes == 40 * MiB
    assert measured.cpu_millicores == 400  # 2/10 of the machine's 2 CPUs
    assert _usage({}).cpu_millicores == 0
