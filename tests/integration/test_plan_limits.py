"""Issue 11, point 2, on the real dockerd: each project runs with exactly its plan's limits (its
parent cgroup and every container), an upgrade reaches the running containers at once without a
rebuild, and a downgrade is taken only when what the project uses now fits the smaller plan."""

from __future__ import annotations

import asyncio

import docker
import pytest
from docker.models.containers import Container

from core.billing.plans import Plan, PlanSpec
from core.deploy.service import Deployment
from core.errors import ConflictError
from core.runtime.cgroups import ParentCgroups
from tests.actors import SYSTEM, acting, as_user
from tests.fixtures_deploy import Deploying, counter_app, page_app

pytestmark = pytest.mark.timeout(240)
MiB = 1 << 20

# Small plans, so the limits differ from the settings' defaults (256 MiB, 0.5 CPU, 256 pids).
TINY = PlanSpec("tiny", "Tiny", 10_000, 300, 96, 5, 2, pids=64)
ROOMY = PlanSpec("roomy", "Roomy", 20_000, 700, 160, 50, 3, pids=100)
SINGLE = PlanSpec("single", "Single", 5_000, 200, 64, 2, 1, pids=40)


async def plan(deploying: Deploying, spec: PlanSpec) -> Plan:
    return await deploying.panel.plans.add_version(SYSTEM, spec)


async def on_plan(
    deploying: Deploying, project: str, spec: PlanSpec, files: dict[str, str | bytes]
) -> Deployment:
    await plan(deploying, spec)
    await deploying.panel.subscriptions.create_project(
        acting(deploying.user_id), project, spec.code
    )
    done = await deploying.deploy_files(project, files, within=120)
    assert done.state == "running", await deploying.log(done)
    return done


def containers_of(
    client: docker.DockerClient, deploying: Deploying, done: Deployment
) -> list[Container]:
    found = client.containers.list(
        filters={
            "label": [
                f"ghst.deployment={done.id}",
                f"ghst.instance={deploying.panel.settings.instance}",
            ]
        }
    )
    return [c for c in found if c.labels.get("ghst.project") == done.project]


def limits_of(container: Container) -> tuple[int, int, int]:
    container.reload()
    host = container.attrs["HostConfig"]
    return host["NanoCpus"], host["Memory"], host["PidsLimit"]


def expected(spec: PlanSpec) -> tuple[int, int, int]:
    return spec.cpu_millicores * 1_000_000, spec.ram_mb * MiB, spec.pids_limit


def group_limits(deploying: Deploying, project: str) -> tuple[int, int, int]:
    """(CPU quota in µs per 100 ms, memory bytes, pids) of the project's parent cgroup."""
    cgroups = ParentCgroups()
    name = deploying.panel.deployer.app_cgroup(project)
    if cgroups.unified:
        folder = cgroups.root / name
        quota = (folder / "cpu.max").read_text().split()[0]
        memory = (folder / "memory.max").read_text()
        pids = (folder / "pids.max").read_text()
    else:
        quota = (cgroups.root / "cpu" / name / "cpu.cfs_quota_us").read_text()
        memory = (cgroups.root / "memory" / name / "memory.limit_in_bytes").read_text()
        pids = (cgroups.root / "pids" / name / "pids.max").read_text()
    return int(quota), int(memory), int(pids)


def expected_group(spec: PlanSpec) -> tuple[int, int, int]:
    return spec.cpu_millicores * 100, spec.ram_mb * MiB, spec.pids_limit


async def test_a_dockerfile_app_runs_with_its_plans_limits_and_an_upgrade_reaches_it_at_once(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    done = await on_plan(deploying, "tidy", TINY, page_app(base_image, "tidy"))
    (container,) = containers_of(docker_client, deploying, done)
    assert limits_of(container) == expected(TINY)
    assert container.attrs["HostConfig"]["CgroupParent"] == (
        f"/{deploying.panel.deployer.app_cgroup('tidy')}"
    )
    assert await asyncio.to_thread(group_limits, deploying, "tidy") == expected_group(TINY)

    await plan(deploying, ROOMY)
    changed = await deploying.panel.subscriptions.change_plan(
        acting(deploying.user_id), "tidy", "roomy"
    )
    assert changed.plan.code == "roomy"
    # The same container (no rebuild, no restart), with the new plan's limits.
    (same,) = containers_of(docker_client, deploying, done)
    assert same.id == container.id
    assert same.attrs["State"]["StartedAt"] == container.attrs["State"]["StartedAt"]
    assert limits_of(same) == expected(ROOMY)
    assert await asyncio.to_thread(group_limits, deploying, "tidy") == expected_group(ROOMY)
    usage = await deploying.panel.subscriptions.usage(acting(deploying.user_id), "tidy")
    assert usage.plan == "Roomy"
    assert (usage.cpu.limit, usage.ram.limit, usage.disk.limit, usage.services.limit) == (
        700,
        160 * MiB,
        50 * MiB,
        3,
    )
    assert usage.services.used == 1 and 0 < usage.ram.used < 160 * MiB
    assert 0 < usage.disk.used == usage.archive_bytes


async def test_a_compose_app_runs_with_its_plans_limits_in_every_container(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    files: dict[str, str | bytes] = {
        "compose.yaml": (
            "services:\n"
            f"  web:\n    image: {base_image}\n    ports: ['8000']\n"
            "    command: ['httpd', '-f', '-p', '8000', '-h', '/']\n"
            f"  worker:\n    image: {base_image}\n    command: ['sleep', '3600']\n"
        )
    }
    done = await on_plan(deploying, "stack", TINY, files)
    containers = containers_of(docker_client, deploying, done)
    assert len(containers) == 2
    for container in containers:
        assert limits_of(container) == expected(TINY)
    assert await asyncio.to_thread(group_limits, deploying, "stack") == expected_group(TINY)

    # A third service is past Tiny's two.
    crowded = dict(files)
    crowded["compose.yaml"] = str(files["compose.yaml"]) + (
        f"  extra:\n    image: {base_image}\n    command: ['sleep', '3600']\n"
    )
    failed = await deploying.deploy_files("stack", crowded, within=120)
    assert failed.state == "failed"
    assert "at most 2 per project" in failed.error, failed.error


async def test_a_downgrade_that_does_not_fit_is_refused_with_each_reason_and_changes_nothing(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    files = counter_app(base_image, "kept")
    files["compose.yaml"] = str(files["compose.yaml"]).replace(
        "volumes:\n",
        f"  worker:\n    image: {base_image}\n    command: ['sleep', '3600']\nvolumes:\n",
    )
    done = await on_plan(deploying, "heavy", TINY, files)
    web = next(c for c in containers_of(docker_client, deploying, done) if "web" in c.name)
    # 3 MiB in the app's volume: more than Single's 2 MiB of disk.
    code, output = await asyncio.to_thread(
        web.exec_run, ["sh", "-c", "dd if=/dev/zero of=/data/blob bs=1M count=3"]
    )
    assert code == 0, output
    await plan(deploying, SINGLE)
    alice = acting(deploying.user_id)
    with pytest.raises(ConflictError) as refused:
        await deploying.panel.subscriptions.change_plan(alice, "heavy", "single")
    message = refused.value.message
    assert "does not fit the Single plan" in message
    assert "Disk: the project uses" in message and "volumes 3.0 MiB" in message
    assert "Services: 2 are running; Single runs at most 1" in message
    kept = await deploying.panel.subscriptions.plan_of(alice, "heavy")
    assert kept is not None and kept.plan.code == "tiny"
    for container in containers_of(docker_client, deploying, done):
        assert limits_of(container) == expected(TINY)
    assert await asyncio.to_thread(group_limits, deploying, "heavy") == expected_group(TINY)


async def test_a_downgrade_that_fits_takes_effect_at_once(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await plan(deploying, TINY)
    done = await on_plan(deploying, "light", ROOMY, page_app(base_image, "light"))
    changed = await deploying.panel.subscriptions.change_plan(
        acting(deploying.user_id), "light", "tiny"
    )
    assert changed.plan.code == "tiny"
    (container,) = containers_of(docker_client, deploying, done)
    assert limits_of(container) == expected(TINY)
    assert await asyncio.to_thread(group_limits, deploying, "light") == expected_group(TINY)
    # Still serving after the change.
    status = await deploying.panel.deployments.status(as_user(deploying.user_id), "light")
    assert status.state == "running"
