"""Issue 11: a hostile tenant against its plan. A compose file asking for more CPU, memory or
processes than the plan gets the plan's; escapes refused before stay refused on a plan; a volume
filled past the plan's disk shuts the next deploy and upload; a second free project cannot be
raced into being; another tenant's plan cannot be changed or even read."""

from __future__ import annotations

import asyncio

import docker
import pytest

from core.billing.plans import PlanSpec
from core.errors import ConflictError, NotFoundError, QuotaExceededError
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.fixtures_deploy import Deploying, counter_app
from tests.integration.test_plan_limits import containers_of, expected, limits_of

pytestmark = pytest.mark.timeout(240)
MiB = 1 << 20
PASSWORD = "correct horse battery"
TINY = PlanSpec("tiny", "Tiny", 10_000, 300, 96, 5, 2, pids=64)

GREEDY = """services:
  web:
    image: {image}
    ports: ['8000']
    command: ['httpd', '-f', '-p', '8000', '-h', '/']
    mem_limit: 8g
    memswap_limit: 16g
    cpus: 4
    pids_limit: 100000
    cpu_quota: 400000
    deploy:
      resources:
        limits: {{cpus: '4', memory: 8g, pids: 100000}}
"""


async def tiny_project(deploying: Deploying, name: str) -> None:
    await deploying.panel.plans.add_version(SYSTEM, TINY)
    await deploying.panel.subscriptions.create_project(acting(deploying.user_id), name, "tiny")


async def test_a_compose_file_asking_for_more_than_the_plan_gets_the_plan(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await tiny_project(deploying, "greedy")
    done = await deploying.deploy_files(
        "greedy", {"compose.yaml": GREEDY.format(image=base_image)}, within=120
    )
    # Its own limits are dropped (the panel writes the file from an allow-list): the plan's.
    assert done.state == "running", await deploying.log(done)
    (web,) = containers_of(docker_client, deploying, done)
    assert limits_of(web) == expected(TINY)
    assert web.attrs["HostConfig"]["CpuQuota"] in (0, None)


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        ("    privileged: true\n", "privileged"),
        ("    pid: host\n", "process namespace"),
        ("    cap_add: [SYS_ADMIN]\n", "cap_add"),
        ("    volumes: ['/:/host']\n", "host path"),
    ],
)
async def test_escapes_refused_before_stay_refused_on_a_plan(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    option: str,
    refusal: str,
) -> None:
    await tiny_project(deploying, "escape")
    compose = (
        f"services:\n  web:\n    image: {base_image}\n    ports: ['8000']\n"
        "    command: ['httpd', '-f', '-p', '8000', '-h', '/']\n" + option
    )
    done = await deploying.deploy_files("escape", {"compose.yaml": compose}, within=120)
    assert done.state == "failed"
    assert refusal in done.error.lower(), done.error
    assert containers_of(docker_client, deploying, done) == []


async def test_a_volume_filled_past_the_plan_shuts_the_next_deploy_and_upload(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await tiny_project(deploying, "filler")
    done = await deploying.deploy_files("filler", counter_app(base_image, "full"), within=120)
    assert done.state == "running", await deploying.log(done)
    (web,) = containers_of(docker_client, deploying, done)
    # Nothing bounds a local volume's size on ext4: the tenant can write past the plan's 5 MiB.
    code, output = await asyncio.to_thread(
        web.exec_run, ["sh", "-c", "dd if=/dev/zero of=/data/blob bs=1M count=6"]
    )
    assert code == 0, output
    alice = acting(deploying.user_id)
    usage = await deploying.panel.subscriptions.usage(alice, "filler")
    assert usage.disk.used > 5 * MiB and usage.volume_bytes >= 6 * MiB
    # The next upload is refused at once, saying what holds the space and what to do.
    with pytest.raises(QuotaExceededError) as refused:
        await deploying.upload("filler", counter_app(base_image, "again"))
    assert "no room left in the project's disk on the Tiny plan (5.0 MiB)" in (
        refused.value.message
    )
    assert "its apps' volumes 6.0 MiB" in refused.value.message
    # A redeploy of the version it has is refused too, and the live version keeps serving.
    queued = await deploying.panel.deployments.redeploy(alice, "filler")
    failed = await deploying.settle(queued, within=60)
    assert failed.state == "failed"
    assert "no room left in the project's disk" in failed.error, failed.error
    status = await deploying.panel.deployments.status(alice, "filler")
    assert status.live is not None and status.live.id == done.id


async def test_a_second_free_project_cannot_be_raced_into_being(panel: Panel) -> None:
    mallory = acting(await panel.accounts.sign_up("mallory", "m@example.com", PASSWORD))
    outcomes = await asyncio.gather(
        *(panel.subscriptions.create_project(mallory, f"free-{n}") for n in range(6)),
        return_exceptions=True,
    )
    made = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(made) == 1, outcomes
    assert all(isinstance(o, ConflictError) for o in outcomes if not isinstance(o, tuple))
    # No project was left without its plan by a refused attempt.
    assert len(await panel.projects.list(mallory)) == 1
    # Nor through the door mkdir uses (the same service).
    with pytest.raises(ConflictError, match="one free project"):
        await panel.subscriptions.create_project(mallory, "another")


async def test_another_tenants_plan_cannot_be_changed_or_measured(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "a@example.com", PASSWORD))
    mallory = acting(await panel.accounts.sign_up("mallory", "m@example.com", PASSWORD))
    await panel.subscriptions.create_project(alice, "shop", "host-0")
    for attempt in (
        panel.subscriptions.change_plan(mallory, "shop", "host-2"),
        panel.subscriptions.change_plan(mallory, "shop", "free"),
        panel.subscriptions.usage(mallory, "shop"),
        panel.subscriptions.plan_of(mallory, "shop"),
    ):
        with pytest.raises(NotFoundError):
            await attempt
    kept = await panel.subscriptions.plan_of(alice, "shop")
    assert kept is not None and kept.plan.code == "host-0"
    # Nor can an upload of hers be pushed into her project.
    with pytest.raises(NotFoundError):
        await panel.archives.begin_upload(mallory, "shop", "app.tar")
