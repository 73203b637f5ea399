"""Deployment fixtures: a Panel wired to the machine's dockerd and the test nginx, and a worker.

Each test gets its own `instance` name, so every container, image and network it makes carries
a label of its own: the clean-up removes exactly those, and two test runs never collide.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from core.deploy.service import Deployment
from core.deploy.worker import DeploymentWorker
from core.panel import Panel
from core.routing.nginx import NginxRouter
from core.runtime.cgroups import ParentCgroups
from core.settings import Settings
from tests.actors import acting, as_user
from tests.conftest import reset_state, with_settings
from tests.services import free_port, temp_root

FINISHED = ("running", "failed", "cancelled", "superseded")


def app_tar(files: Mapping[str, str | bytes]) -> bytes:
    """A tar archive of an app, as a user would upload it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def page_app(base_image: str, page: str, extra_dockerfile: str = "") -> dict[str, str]:
    """busybox httpd serving `page` on port 8000 (EXPOSEd)."""
    return {
        "Dockerfile": (
            f"FROM {base_image}\nCOPY index.html /www/index.html\n{extra_dockerfile}"
            'EXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
        ),
        "index.html": page,
    }


def counter_app(
    base_image: str, word: str, volumes: str = "'counter:/data'"
) -> dict[str, str | bytes]:
    """A compose app counting its starts in the named volume `counter`, serving "<word> <n>"
    on port 8000; `volumes` is the web service's volume list (YAML flow items)."""
    # `$$` is a literal `$` in a compose file, as compose itself reads it.
    script = (
        "n=$$(cat /data/n 2>/dev/null || echo 0); n=$$((n+1)); echo $$n > /data/n;"
        f" echo {word} $$n > /www/index.html; exec httpd -f -p 8000 -h /www"
    )
    return {
        "compose.yaml": (
            "services:\n"
            "  web:\n"
            f"    image: {base_image}\n"
            "    ports: ['8000']\n"
            f"    command: ['sh', '-c', '{script}']\n"
            f"    volumes: [{volumes}]\n"
            "volumes:\n"
            "  counter: {}\n"
        )
    }


@dataclass
class Deploying:
    panel: Panel
    router: NginxRouter
    user_id: int

    async def upload(self, project: str, files: Mapping[str, str | bytes]) -> str:
        transfer = await self.panel.archives.begin_upload(acting(self.user_id), project, "app.tar")
        await transfer.write(app_tar(files))
        return (await transfer.finish()).name

    async def deploy_files(
        self, project: str, files: Mapping[str, str | bytes], within: float = 60
    ) -> Deployment:
        """Upload `files` as the project's next version, deploy it and wait for the end."""
        await self.upload(project, files)
        queued = await self.panel.deployments.deploy(as_user(self.user_id), project)
        return await self.settle(queued, within)

    async def settle(self, deployment: Deployment, within: float = 60) -> Deployment:
        """Wait for the deployment to finish; return it as it ended."""
        deadline = time.monotonic() + within
        while True:
            current = await self.panel.deployments.get(
                as_user(self.user_id), deployment.project, deployment.id
            )
            if current.state in FINISHED:
                return current
            if time.monotonic() > deadline:
                log, _ = await self.panel.deployments.build_log(
                    as_user(self.user_id), deployment.project, deployment.id
                )
                raise AssertionError(f"#{deployment.id} still {current.state}:\n{log}")
            await asyncio.sleep(0.05)

    async def log(self, deployment: Deployment) -> str:
        text, _ = await self.panel.deployments.build_log(
            as_user(self.user_id), deployment.project, deployment.id
        )
        return text

    async def wait_for(
        self, deployment: Deployment, condition: Callable[[Deployment], bool], within: float = 30
    ) -> Deployment:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            current = await self.panel.deployments.get(
                as_user(self.user_id), deployment.project, deployment.id
            )
            if condition(current):
                return current
            await asyncio.sleep(0.05)
        raise AssertionError(f"#{deployment.id} never reached the condition")


@pytest.fixture
def deploy_settings(settings: Settings, nginx_router: NginxRouter) -> Settings:
    low = 30000 + (uuid.uuid4().int % 300) * 100
    return with_settings(
        settings,
        instance=f"t{uuid.uuid4().hex[:10]}",
        data_dir=temp_root("ghst-deploy-"),
        docker_pull=False,
        port_min=low,
        port_max=low + 99,
        drain_seconds=0.3,
        health_timeout=10.0,
        lease_seconds=3.0,
        build_timeout=60.0,
        domain=nginx_router.domain,
        nginx_prefix=str(nginx_router.prefix),
        nginx_port=nginx_router.port,
        nginx_body_limit_mb=nginx_router.body_limit_mb,
        nginx_managed=False,
    )


@pytest.fixture
async def deploy_panel(deploy_settings: Settings) -> AsyncIterator[Panel]:
    """A panel for deployments, without a worker (tests start the workers they need)."""
    await reset_state(deploy_settings)
    panel = await Panel.open(deploy_settings)
    try:
        yield panel
    finally:
        # Everything this test's instance made, whatever state the test left it in.
        await panel.engine.remove_labelled({})
        await asyncio.to_thread(remove_cgroups, deploy_settings.instance)
        await panel.close()


@pytest.fixture
async def deploying(deploy_panel: Panel, nginx_router: NginxRouter) -> AsyncIterator[Deploying]:
    """A user "alice" on a deploy panel, and a worker in the test's loop."""
    user = await deploy_panel.accounts.sign_up(
        "alice", "alice@example.com", "correct horse battery"
    )
    async with running_worker(deploy_panel):
        yield Deploying(deploy_panel, nginx_router, user.id)


def remove_cgroups(instance: str) -> None:
    """The parent cgroups the test's instance made (core.runtime.cgroups), once their containers are gone."""
    cgroups = ParentCgroups()
    folders = [cgroups.root] if cgroups.unified else list(cgroups.root.iterdir())
    for folder in folders:
        for group in folder.glob(f"{instance}-*"):
            cgroups.remove(group.name)


@asynccontextmanager
async def running_worker(panel: Panel, **options: object) -> AsyncIterator[DeploymentWorker]:
    worker = panel.worker(**options)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.05)


__all__ = ["Deploying", "app_tar", "eventually", "free_port", "page_app", "running_worker"]
