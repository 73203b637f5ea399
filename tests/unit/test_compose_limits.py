"""Compose limits that hold per project: the service cap, tmpfs sizes, the cgroup parent and the
cost of reading YAML (issue 9, point 5)."""

from __future__ import annotations

from typing import Any

import pytest

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.limits import MAX_NODES
from core.runtime.compose.load import parse_compose
from tests.unit.test_compose import RENDER_DEFAULTS, render

MiB = 1 << 20
# The render arguments of the compose tests, with the project's parent cgroup.
RENDER: dict[str, Any] = {**RENDER_DEFAULTS, "cgroup_parent": "/ghst-shop"}


def rendered(text: str, **overrides: Any) -> dict[str, Any]:
    return render(parse_compose(text), **{**RENDER, **overrides})


def web(options: str) -> str:
    return "services:\n  web:\n    image: shop:1\n    ports: ['8000']\n" + options


def test_every_service_runs_under_the_projects_cgroup() -> None:
    services = rendered(web("  db: {image: pg:1}\n"))["services"]
    assert {s["cgroup_parent"] for s in services.values()} == {"/ghst-shop"}


def test_more_services_than_the_cap_are_refused_but_profiles_do_not_count() -> None:
    extra = "".join(f"  s{n}: {{image: x:1}}\n" for n in range(3))
    with pytest.raises(ComposeRejected, match="has 4 services; this panel runs at most 3"):
        parse_compose(web(extra), max_services=3)
    later = "".join(f"  s{n}: {{image: x:1, profiles: [later]}}\n" for n in range(3))
    assert parse_compose(web(later), max_services=1).services == ("web",)


def test_a_tmpfs_without_a_size_gets_a_quarter_of_the_memory_at_most_64_mib() -> None:
    service = rendered(web("    tmpfs: [/run, '/tmp:mode=1777,noexec']\n"))["services"]["web"]
    assert service["tmpfs"] == [f"/run:size={64 * MiB}", f"/tmp:size={64 * MiB},mode=1777,noexec"]
    small = rendered(web("    tmpfs: /run\n"), memory_bytes=64 * MiB)["services"]["web"]
    assert small["tmpfs"] == [f"/run:size={16 * MiB}"]
    volume = rendered(web("    volumes: [{type: tmpfs, target: /c, tmpfs: {mode: 448}}]\n"))
    assert volume["services"]["web"]["volumes"] == [
        {"type": "tmpfs", "target": "/c", "tmpfs": {"mode": 448, "size": 64 * MiB}}
    ]


def test_tmpfs_sizes_together_must_fit_the_projects_memory() -> None:
    text = web("    tmpfs: ['/a:size=200m']\n  db:\n    image: pg:1\n    tmpfs: ['/b:size=100m']\n")
    with pytest.raises(ComposeRejected, match=r"take 300 MiB together.*\(256 MiB\)"):
        rendered(text)


@pytest.mark.parametrize("option", ["dev", "suid", "exec=1", "nr_inodes=0", "size=lots"])
def test_tmpfs_options_outside_the_allow_list_are_refused(option: str) -> None:
    with pytest.raises(ComposeRejected, match="tmpfs"):
        parse_compose(web(f"    tmpfs: ['/run:{option}']\n"))


def test_merge_keys_are_counted_before_anything_is_built() -> None:
    keys = ", ".join(f"k{i}: {i}" for i in range(1000))
    copies = "\n".join(f"  c{i}: {{<<: *b}}" for i in range(MAX_NODES // 1000 + 1))
    text = f"x-base: &b {{{keys}}}\nx-copies:\n{copies}\n" + web("")
    with pytest.raises(ComposeRejected, match="merge keys included"):
        parse_compose(text)
