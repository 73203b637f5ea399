"""Compose stack state lives in PostgreSQL: a rollback, a stop and a start work on a worker that
has none of the deploying worker's files, and what is saved reads back as it was written.

Real PostgreSQL, dockerd, compose and nginx; two panels on one database, each with its own data
directory, stand for two hosts.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import docker
import pytest

from core.panel import Panel
from core.routing.nginx import NginxRouter
from core.runtime.compose.errors import ComposeStateUnreadable
from core.runtime.compose.load import parse_compose
from core.runtime.compose.stacks import ComposeStacks
from core.runtime.compose.state import StackState
from core.settings import Settings
from tests.actors import as_user
from tests.conftest import with_settings
from tests.fixtures_deploy import Deploying, app_tar, eventually, running_worker
from tests.fixtures_nginx import http_request
from tests.services import temp_root

pytestmark = pytest.mark.timeout(240)


def greeting_app(base_image: str, greeting: str) -> dict[str, str | bytes]:
    """A compose app built from the archive whose page comes from an env_file: a rollback needs
    both the built image and the variables read while the archive was unpacked."""
    script = "echo $$GREETING > /www/index.html; exec httpd -f -p 8000 -h /www"
    return {
        "compose.yaml": (
            "services:\n"
            "  web:\n"
            "    build: ./web\n"
            "    ports: ['8000']\n"
            "    env_file: [greeting.env]\n"
            f"    command: ['sh', '-c', '{script}']\n"
        ),
        "greeting.env": f"GREETING={greeting}\n",
        "web/Dockerfile": f"FROM {base_image}\nRUN mkdir -p /www\n",
    }


def mine(panel: Panel, deployment_id: int) -> dict[str, list[str]]:
    return {
        "label": [f"ghst.deployment={deployment_id}", f"ghst.installation={panel.installation.id}"]
    }


def stack_files(data_dir: Path) -> list[Path]:
    """Files of the old on-disk stack state: rendered stacks and pickled apps."""
    return [
        path
        for path in data_dir.rglob("*")
        if path.suffix == ".pickle" or "stacks" in path.relative_to(data_dir).parts
    ]


async def test_a_worker_on_another_host_rolls_back_stops_and_starts_a_compose_stack(
    deploy_panel: Panel,
    deploy_settings: Settings,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    user = await deploy_panel.accounts.sign_up("alice", "alice@example.com", "correct horse b")
    host_a = Deploying(deploy_panel, nginx_router, user.id)
    await deploy_panel.projects.create(as_user(user.id), "roam")
    async with running_worker(deploy_panel):
        first = await host_a.deploy_files("roam", greeting_app(base_image, "first from file"))
        assert first.state == "running", await host_a.log(first)
        second = await host_a.deploy_files("roam", greeting_app(base_image, "second"))
        assert second.state == "running", await host_a.log(second)
    assert (await http_request(nginx_router, "roam")).text.strip() == "second"
    assert stack_files(deploy_settings.data_dir) == []  # nothing kept on worker A's disk

    # Host B: the same database, dockerd and nginx; a data directory of its own (no archives,
    # no builds, nothing worker A wrote).
    data_b = temp_root("ghst-deploy-b-")
    panel_b = await Panel.open(with_settings(deploy_settings, data_dir=data_b))
    try:
        host_b = Deploying(panel_b, nginx_router, user.id)
        async with running_worker(panel_b):
            back = await host_b.settle(
                await panel_b.deployments.rollback(as_user(user.id), "roam", first.id)
            )
            log = await host_b.log(back)
            assert back.state == "running", log
            assert "no build" in log
            assert (await http_request(nginx_router, "roam")).text.strip() == "first from file"

            # Worker B retires the stack worker A started: compose down on the saved file
            # removes its network as well as its containers.
            async def second_stack_gone() -> bool:
                filters = mine(panel_b, second.id)
                return not (
                    docker_client.api.containers(all=True, filters=filters)
                    or docker_client.api.networks(filters=filters)
                )

            await eventually(second_stack_gone)

            await panel_b.deployments.stop(as_user(user.id), "roam")
            assert (await http_request(nginx_router, "roam")).status == 503
            running = docker_client.api.containers(filters=mine(panel_b, back.id))
            assert running == []
            await panel_b.deployments.start(as_user(user.id), "roam")
            assert (await http_request(nginx_router, "roam")).text.strip() == "first from file"
        assert stack_files(data_b) == []
    finally:
        await panel_b.close()
        shutil.rmtree(data_b, ignore_errors=True)


async def queued_deployment(panel: Panel, project: str) -> tuple[int, int]:
    """(user, deployment): a queued deployment (no worker runs) for a stack state to belong to."""
    user = await panel.accounts.sign_up("bob", "bob@example.com", "correct horse b")
    await panel.projects.create(as_user(user.id), project)
    transfer = await panel.archives.begin_upload(as_user(user.id), project, "app.tar")
    await transfer.write(app_tar({"compose.yaml": "services: {web: {image: x}}\n"}))
    await transfer.finish()
    return user.id, (await panel.deployments.deploy(as_user(user.id), project)).id


def saved_state(variables: Mapping[str, str]) -> StackState:
    app = parse_compose(
        "services:\n"
        "  web:\n"
        "    image: shop:1\n"
        "    environment: {ZED: '1', ALPHA: '2', NUL: \"a\\0b\", WIDE: 'ünï ✓'}\n",
        variables=variables,
    )
    return StackState(app, "services: {}\n")


async def test_saved_state_reads_back_as_written_and_goes_with_its_deployment(
    panel: Panel,
) -> None:
    user_id, deployment_id = await queued_deployment(panel, "kept")
    stacks = ComposeStacks(panel.pool)
    assert await stacks.get(deployment_id) is None
    state = saved_state({})
    await stacks.save(deployment_id, state)
    restored = await stacks.get(deployment_id)
    assert restored is not None and restored == state
    environment = restored.app.document["services"]["web"]["environment"]
    assert list(environment) == ["ZED", "ALPHA", "NUL", "WIDE"]  # a json column keeps order

    # Saving again replaces; in the caller's transaction, a rollback undoes it.
    newer = StackState(state.app, "services: {web: {}}\n")
    async with panel.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await stacks.save(deployment_id, newer, conn)
        assert await stacks.get(deployment_id, conn) == newer
        await transaction.rollback()
    assert await stacks.get(deployment_id) == state
    await stacks.save(deployment_id, newer)
    assert await stacks.get(deployment_id) == newer

    # A newer panel's format is refused with a message, not misread.
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE compose_stacks SET state = json_build_object('format', 7)"
            " WHERE deployment_id = $1",
            deployment_id,
        )
    with pytest.raises(ComposeStateUnreadable, match=r"Deployment #\d+'s compose stack was saved"):
        await stacks.get(deployment_id)

    await stacks.forget(deployment_id)
    assert await stacks.get(deployment_id) is None
    await stacks.save(deployment_id, state)
    await panel.projects.delete(
        as_user(user_id), "kept", "kept"
    )  # its deployments go, and their stacks
    assert await stacks.get(deployment_id) is None
