"""The switch to a new version against interruptions that land right at it.

A worker's job can be interrupted by its heartbeat (lease lost, cancel asked), by the panel
shutting down, or by its lease running out while nginx already points at the new version. None
of these may tear down a version that went live, nor leave nginx routing to one that did not.
Each test widens the instant after (or before) the database records the switch, so the
interruption lands exactly there on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import docker
import pytest

from core.deploy.queue import WORKER_DIED
from core.deploy.service import Deployment
from core.panel import Panel
from tests.actors import acting, as_user
from tests.fixtures_deploy import Deploying, eventually, page_app, running_worker
from tests.fixtures_nginx import http_request
from tests.integration.test_deploy import containers_left, images_left, mine

pytestmark = pytest.mark.timeout(180)

GoLive = Callable[[int, str, str], Awaitable[Deployment | None]]


def around_go_live(
    monkeypatch: pytest.MonkeyPatch,
    panel: Panel,
    before: Callable[[int], Awaitable[None]] | None = None,
    after: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Run `before`/`after` around the real go-live of every deployment."""
    real: GoLive = panel.queue.go_live

    async def go_live(deployment_id: int, worker: str, log_text: str = "") -> Deployment | None:
        if before is not None:
            await before(deployment_id)
        previous = await real(deployment_id, worker, log_text)
        if after is not None:
            await after(deployment_id)
        return previous

    monkeypatch.setattr(panel.queue, "go_live", go_live)


async def served(deploying: Deploying, project: str) -> tuple[str, str]:
    page = await http_request(deploying.router, project, headers=deploying.router.probe_headers())
    return page.text.strip(), page.headers.get("x-ghst-deployment", "")


async def live_first_version(deploying: Deploying, project: str, base_image: str) -> Deployment:
    await deploying.panel.projects.create(acting(deploying.user_id), project)
    first = await deploying.deploy_files(project, page_app(base_image, "v1"))
    assert first.state == "running", await deploying.log(first)
    return first  # type: ignore[no-any-return]


async def expire_lease_and_reap(panel: Panel, deployment_id: int) -> list[int]:
    """What another worker sees once this job's lease ran out: it reaps (fails) the job."""
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE deployments SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            deployment_id,
        )
    return [d.id for d in await panel.queue.reap_expired()]


async def wait_until_removed(client: docker.DockerClient, panel: Panel, deployment_id: int) -> None:
    """The reap fails the job at once; its worker routes back first, then removes what it
    made: once its containers are gone, the worker is done with it."""

    async def gone() -> bool:
        return not containers_left(client, mine(panel, deployment_id))

    await eventually(gone, within=10)


async def test_a_heartbeat_right_after_going_live_keeps_the_new_version(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await live_first_version(deploying, "steady", base_image)

    # Two heartbeats fit between the switch and the end of the job.
    async def linger(_: int) -> None:
        await asyncio.sleep(panel.settings.lease_seconds * 0.8)

    around_go_live(monkeypatch, panel, after=linger)
    second = await deploying.deploy_files("steady", page_app(base_image, "v2"))
    assert second.state == "running", await deploying.log(second)
    await asyncio.sleep(panel.settings.lease_seconds / 2)  # any clean-up would have run by now

    assert await served(deploying, "steady") == ("v2", str(second.id))
    assert containers_left(docker_client, mine(panel, second.id))
    assert second.image in images_left(docker_client, {"reference": second.image or ""})
    status = await panel.deployments.status(as_user(user), "steady")
    assert status.live is not None and status.live.id == second.id
    # And it can be restarted: its image is still there.
    restart = await deploying.settle(await panel.deployments.restart(as_user(user), "steady"))
    assert restart.state == "running", await deploying.log(restart)
    assert (await served(deploying, "steady"))[0] == "v2"


async def test_a_shutdown_during_the_switch_lets_it_finish_and_keeps_the_new_version(
    deploy_panel: Panel,
    base_image: str,
    nginx_router: object,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    panel = deploy_panel
    user = (await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")).id
    deploying = Deploying(panel, nginx_router, user)  # type: ignore[arg-type]
    await panel.projects.create(acting(user), "calm")
    async with running_worker(panel):
        first = await deploying.deploy_files("calm", page_app(base_image, "v1"))
    assert first.state == "running", await deploying.log(first)

    stop = asyncio.Event()
    worker = panel.worker(shutdown_grace=0.1)

    async def shut_down_now(_: int) -> None:
        stop.set()  # the worker stops waiting after 0.1 s and cancels the job: here
        await asyncio.sleep(1.0)

    around_go_live(monkeypatch, panel, before=shut_down_now)
    await deploying.upload("calm", page_app(base_image, "v2"))
    second = await panel.deployments.deploy(as_user(user), "calm")
    running = asyncio.get_running_loop().create_task(worker.run(stop))
    await asyncio.wait_for(running, 60)

    ended = await panel.deployments.get(as_user(user), "calm", second.id)
    assert ended.state == "running", await deploying.log(ended)
    assert await served(deploying, "calm") == ("v2", str(second.id))
    assert containers_left(docker_client, mine(panel, second.id))
    # The old version was retired as the worker stopped, not left running.
    assert not containers_left(docker_client, mine(panel, first.id))


async def test_a_lease_lost_at_the_switch_routes_back_to_the_live_version(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    panel, user = deploying.panel, deploying.user_id
    first = await live_first_version(deploying, "loyal", base_image)

    async def lease_runs_out(deployment_id: int) -> None:
        # nginx already points at the new version when another worker reaps the job.
        assert (await served(deploying, "loyal"))[1] == str(deployment_id)
        assert await expire_lease_and_reap(panel, deployment_id) == [deployment_id]

    around_go_live(monkeypatch, panel, before=lease_runs_out)
    second = await deploying.deploy_files("loyal", page_app(base_image, "v2"))

    assert (second.state, second.error) == ("failed", WORKER_DIED)
    await wait_until_removed(docker_client, panel, second.id)
    assert await served(deploying, "loyal") == ("v1", str(first.id))
    status = await panel.deployments.status(as_user(user), "loyal")
    assert status.live is not None and status.live.id == first.id


async def test_a_lease_lost_at_the_first_switch_leaves_no_route(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "fresh")

    async def lease_runs_out(deployment_id: int) -> None:
        assert await expire_lease_and_reap(panel, deployment_id) == [deployment_id]

    around_go_live(monkeypatch, panel, before=lease_runs_out)
    first = await deploying.deploy_files("fresh", page_app(base_image, "v1"))
    assert (first.state, first.error) == ("failed", WORKER_DIED)
    await wait_until_removed(docker_client, panel, first.id)
    page = await http_request(deploying.router, "fresh", headers=deploying.router.probe_headers())
    assert page.status == 404 and "x-ghst-deployment" not in page.headers
