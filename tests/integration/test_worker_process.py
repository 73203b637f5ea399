"""`ghst worker` as a real process: killed with SIGKILL in the middle of a build, its job does not
stay "building" past its lease; another worker reaps it and cleans up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import docker
import pytest

from core.deploy.queue import WORKER_DIED
from core.panel import Panel
from core.settings import Settings
from tests.actors import acting, as_user
from tests.fixtures_deploy import Deploying, eventually, page_app, running_worker
from tests.fixtures_nginx import NginxRouter, http_request

GHST = Path(sys.executable).parent / "ghst"
pytestmark = pytest.mark.timeout(120)


def worker_env(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GHST_")}
    names = (
        "database_url", "redis_url", "data_dir", "instance", "port_min", "port_max",
        "lease_seconds", "domain", "nginx_prefix", "nginx_port", "health_timeout",
    )  # fmt: skip
    for name in names:
        env[f"GHST_{name.upper()}"] = str(getattr(settings, name))
    env["GHST_DOCKER_PULL"] = "0"
    env["GHST_NGINX_MANAGED"] = "0"
    return env


async def test_a_worker_killed_mid_build_is_reaped_after_its_lease(
    deploy_panel: Panel,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    panel = deploy_panel
    user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    deploying = Deploying(panel, nginx_router, user.id)
    await panel.projects.create(acting(user.id), "doomed")
    await deploying.upload("doomed", page_app(base_image, "never", "RUN sleep 60\n"))
    queued = await panel.deployments.deploy(as_user(user.id), "doomed")

    process = await asyncio.create_subprocess_exec(
        str(GHST), "worker", env=worker_env(panel.settings), stderr=asyncio.subprocess.PIPE
    )
    try:
        await deploying.wait_for(queued, lambda d: d.state == "building", within=30)
        await eventually(lambda: _log_has(deploying, queued, "RUN sleep 60"), within=30)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    # The job is still "building" (nobody is left to say otherwise) until the lease runs out.
    assert (await panel.deployments.get(as_user(user.id), "doomed", queued.id)).state == "building"
    async with running_worker(panel):
        ended = await deploying.settle(queued, within=panel.settings.lease_seconds + 10)
    assert (ended.state, ended.error) == ("failed", WORKER_DIED)
    assert (await panel.deployments.status(as_user(user.id), "doomed")).state == "failed"
    # The next deploy of the project is not blocked by the dead one.
    await deploying.upload("doomed", page_app(base_image, "alive"))
    async with running_worker(panel):
        done = await deploying.settle(await panel.deployments.deploy(as_user(user.id), "doomed"))
    assert done.state == "running", await deploying.log(done)
    assert (await http_request(nginx_router, "doomed")).text.strip() == "alive"


async def _log_has(deploying: Deploying, deployment, text: str) -> bool:  # type: ignore[no-untyped-def]
    return text in await deploying.log(deployment)
