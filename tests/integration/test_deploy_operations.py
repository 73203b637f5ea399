"""Stop, start and delete through the deploy queue: the dashboard's process needs no Docker.

A panel whose Docker engine is unreachable (and that runs no worker) serves the user; a separate
panel on the same database, with dockerd and a worker, carries the jobs out. Real PostgreSQL,
dockerd and nginx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import docker
import pytest

from core.deploy.model import Operation, State
from core.errors import NotFoundError, PanelError
from core.panel import Panel
from core.routing.nginx import NginxRouter
from core.settings import Settings
from tests.actors import as_user
from tests.conftest import with_settings
from tests.fixtures_deploy import Deploying, page_app, running_worker
from tests.fixtures_nginx import http_request

UNREACHABLE_DOCKER = "tcp://127.0.0.1:9"  # the discard port: nothing answers there


@pytest.fixture
async def dashboard(deploy_panel: Panel, deploy_settings: Settings) -> AsyncIterator[Panel]:
    """The panel the user's session talks to: same database, no Docker, no worker."""
    panel = await Panel.open(
        with_settings(deploy_settings, docker_url=UNREACHABLE_DOCKER), run_migrations=False
    )
    try:
        with pytest.raises(PanelError):  # it really cannot reach Docker
            await panel.engine.ping()
        yield panel
    finally:
        await panel.close()


def running_containers(client: docker.DockerClient, panel: Panel, deployment_id: int) -> list[str]:
    """The deployment's running containers (other tests' panels share dockerd and its ids)."""
    labels = [f"ghst.deployment={deployment_id}", f"ghst.installation={panel.installation.id}"]
    return [found["Id"] for found in client.api.containers(filters={"label": labels})]


async def test_a_panel_without_docker_queues_stop_start_and_delete_for_a_worker_with_docker(
    deploy_panel: Panel,
    dashboard: Panel,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    user = await deploy_panel.accounts.sign_up("alice", "alice@example.com", "correct horse b")
    alice = as_user(user.id)
    await dashboard.projects.create(as_user(user.id), "split")
    deploying = Deploying(deploy_panel, nginx_router, user.id)
    async with running_worker(deploy_panel):
        live = await deploying.deploy_files("split", page_app(base_image, "hello"))
        assert live.state == "running", await deploying.log(live)
        assert running_containers(docker_client, deploy_panel, live.id)

        stop = await dashboard.deployments.stop(alice, "split")
        assert (stop.operation, stop.state) == (Operation.STOP, State.DONE)
        assert running_containers(docker_client, deploy_panel, live.id) == []
        assert (await http_request(nginx_router, "split")).status == 503
        assert (await dashboard.deployments.status(alice, "split")).state == "stopped"

        start = await dashboard.deployments.start(alice, "split")
        assert (start.operation, start.state) == (Operation.START, State.DONE)
        assert running_containers(docker_client, deploy_panel, live.id)
        assert (await http_request(nginx_router, "split")).text.strip() == "hello"
        status = await dashboard.deployments.status(alice, "split")
        assert (status.state, status.live, status.latest) == ("running", live, live)
        # The jobs are not deployments: the history the user reads is unchanged.
        assert [d.id for d in await dashboard.deployments.list(alice, "split")] == [live.id]

        await dashboard.deployments.delete_project(alice, "split", "split")
        labels = ["ghst.project=split", f"ghst.installation={deploy_panel.installation.id}"]
        assert docker_client.api.containers(all=True, filters={"label": labels}) == []
        assert (await http_request(nginx_router, "split")).status == 404
        with pytest.raises(NotFoundError):
            await dashboard.deployments.status(alice, "split")


async def test_a_start_the_worker_cannot_carry_out_reaches_the_user_with_its_reason(
    deploy_panel: Panel,
    dashboard: Panel,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    user = await deploy_panel.accounts.sign_up("alice", "alice@example.com", "correct horse b")
    alice = as_user(user.id)
    await dashboard.projects.create(as_user(user.id), "gone")
    deploying = Deploying(deploy_panel, nginx_router, user.id)
    async with running_worker(deploy_panel, live_check_seconds=3600):
        live = await deploying.deploy_files("gone", page_app(base_image, "hello"))
        await dashboard.deployments.stop(alice, "gone")
        labels = [f"ghst.deployment={live.id}", f"ghst.installation={deploy_panel.installation.id}"]
        for container in docker_client.api.containers(all=True, filters={"label": labels}):
            docker_client.api.remove_container(container["Id"], force=True)
        with pytest.raises(PanelError, match="are gone: redeploy the project") as refused:
            await dashboard.deployments.start(alice, "gone")
        assert refused.value.title == "Could not start"
        assert (await dashboard.deployments.status(alice, "gone")).state == "stopped"
