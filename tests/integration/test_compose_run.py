"""Compose apps on this machine's dockerd with the real compose (v2 if present, else v1 1.29).

A rendered file is run as the panel runs it: the stack answers on 127.0.0.1 only, its containers
carry the panel's labels and limits, stop/start/down work, and a named volume outlives one
stack for the next. Each test uses an instance name of its own, and everything labelled with it
(containers, networks, volumes, images) is removed through the SDK at the end. Nothing is pulled.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from core.errors import UnavailableError
from core.runtime.compose.errors import ComposeFailed
from core.runtime.compose.load import parse_compose
from core.runtime.compose.render import render_compose, volume_name
from core.runtime.compose.runner import ComposeRunner
from tests.services import free_port

MiB = 1 << 20
PAGE = "hello from a compose stack\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def purge(client: docker.DockerClient, instance: str) -> None:
    """Everything labelled with this instance, whatever the code under test did."""
    label = {"label": [f"ghst.instance={instance}"]}
    for container in client.containers.list(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for network in client.networks.list(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
    for volume in client.volumes.list(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)


@dataclass
class Stack:
    client: docker.DockerClient
    runner: ComposeRunner
    instance: str
    image: str  # serves PAGE with busybox httpd on port 8000
    folder: Path

    def render(
        self, text: str, name: str, host_port: int, deployment_id: int = 1, **options: Any
    ) -> Path:
        app = parse_compose(text, self.folder)
        rendered = render_compose(
            app,
            stack=name,
            instance=self.instance,
            project="shop",
            deployment_id=deployment_id,
            user_id=42,
            host_port=host_port,
            app_port=app.app_port or 8000,
            built_images={build.service: self.image for build in app.builds},
            env={"PORT": "8000", "GREETING": "from the panel"},
            memory_bytes=64 * MiB,
            cpus=0.5,
            pids=100,
            **options,
        )
        path = self.folder / f"{name}.compose.yml"
        path.write_text(rendered)
        return path

    def containers(self, name: str) -> dict[str, Any]:
        """The stack's containers by service, inspected."""
        found = self.client.containers.list(
            all=True, filters={"label": [f"com.docker.compose.project={name}"]}
        )
        return {
            container.labels["com.docker.compose.service"]: container.attrs for container in found
        }

    def networks(self, name: str) -> list[str]:
        found = self.client.networks.list(filters={"label": [f"com.docker.compose.project={name}"]})
        return [network.name for network in found]


@pytest.fixture
async def stack(
    docker_client: docker.DockerClient, base_image: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    instance = unique("ghst-test")
    image = f"ghst-test/compose-web:{uuid.uuid4().hex[:10]}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "index.html").write_text(PAGE)
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY index.html /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
    )
    await asyncio.to_thread(
        docker_client.images.build, path=str(context), tag=image, rm=True, pull=False
    )
    app_folder = tmp_path / "app"
    app_folder.mkdir()
    (app_folder / "Dockerfile").write_text(f"FROM {base_image}\n")
    try:
        yield Stack(docker_client, ComposeRunner(), instance, image, app_folder)
    finally:
        await asyncio.to_thread(purge, docker_client, instance)
        with contextlib.suppress(docker.errors.APIError):
            await asyncio.to_thread(docker_client.images.remove, image, force=True)


def two_services(base_image: str) -> str:
    return f"""
services:
  web:
    build: .
    ports: ["8080:8000"]
    container_name: fixed-name
    restart: "no"
    environment: {{GREETING: from the file, MODE: file}}
  worker:
    image: {base_image}
    command: ["sleep", "3600"]
    ports: ["9000:9000"]
"""


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


async def wait_for_page(port: int, deadline: float = 30.0) -> str:
    """The page, once the app answers; fails the test if it never does."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return await asyncio.to_thread(get, port)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.1)


async def test_a_rendered_stack_runs_with_the_panels_labels_and_limits(
    stack: Stack, base_image: str
) -> None:
    # A hostile .env beside the file: compose must not read it (v1 takes DOCKER_HOST from it).
    (stack.folder / ".env").write_text(
        "DOCKER_HOST=tcp://127.0.0.1:9\nCOMPOSE_PROJECT_NAME=hijacked\n"
    )
    name = unique("ghst-test-shop")
    port = free_port()
    file = stack.render(two_services(base_image), name, port)
    lines: list[str] = []
    await stack.runner.up(name, file, lines.append)
    assert any(name in line for line in lines)

    assert await wait_for_page(port) == PAGE
    containers = stack.containers(name)
    assert set(containers) == {"web", "worker"}
    for service, attrs in containers.items():
        assert attrs["Name"] != "/fixed-name"
        assert (
            attrs["Config"]["Labels"]
            | {
                "ghst.instance": stack.instance,
                "ghst.project": "shop",
                "ghst.deployment": "1",
                "ghst.user": "42",
            }
            == attrs["Config"]["Labels"]
        ), service
        host = attrs["HostConfig"]
        assert host["Memory"] == 64 * MiB
        assert host["MemorySwap"] == 64 * MiB
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 100
        assert host["Init"] is True
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["Privileged"] is False
        assert host["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-file": "3", "max-size": "10m"},
        }
        env = set(attrs["Config"]["Env"])
        assert {"GREETING=from the panel", "PORT=8000"} <= env, service
    assert containers["web"]["HostConfig"]["PortBindings"] == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    assert not containers["worker"]["HostConfig"]["PortBindings"]
    assert "MODE=file" in containers["web"]["Config"]["Env"]
    networks = stack.networks(name)
    assert networks == [f"{name}_default"] or networks == [f"{name}-default"]
    labels = stack.client.networks.get(networks[0]).attrs["Labels"]
    assert labels["ghst.instance"] == stack.instance
    assert not stack.containers("hijacked")

    await stack.runner.stop(name, file)
    states = {svc: attrs["State"]["Running"] for svc, attrs in stack.containers(name).items()}
    assert states == {"web": False, "worker": False}
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(get, port)

    await stack.runner.start(name, file)
    assert await wait_for_page(port) == PAGE

    await stack.runner.down(name, file)
    assert stack.containers(name) == {}
    assert stack.networks(name) == []
    await stack.runner.down(name, file)  # already gone: nothing to do, no error


async def test_an_image_missing_here_fails_fast_without_pull_and_starts_nothing(
    stack: Stack, base_image: str
) -> None:
    runner = ComposeRunner(allow_pull=False)
    name = unique("ghst-test-shop")
    text = two_services(base_image).replace(
        f"image: {base_image}", "image: 127.0.0.1:9/nowhere/worker:1"
    )
    file = stack.render(text, name, free_port())
    lines: list[str] = []
    with pytest.raises(ComposeFailed) as caught:
        await runner.up(name, file, lines.append)
    assert "service 'worker' ('127.0.0.1:9/nowhere/worker:1') is not available on this server" in (
        caught.value.message
    )
    assert lines == []
    assert stack.containers(name) == {}
    assert stack.networks(name) == []


async def test_a_failed_up_says_why_with_composes_output(stack: Stack, base_image: str) -> None:
    name = unique("ghst-test-shop")
    with socket.socket() as blocker:  # the host port is taken: docker cannot publish on it
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        file = stack.render(two_services(base_image), name, blocker.getsockname()[1])
        lines: list[str] = []
        try:
            with pytest.raises(ComposeFailed) as caught:
                await stack.runner.up(name, file, lines.append)
        finally:
            await stack.runner.down(name, file)
    message = caught.value.message
    assert message.startswith("The app's containers could not be handled: compose up failed")
    assert "address already in use" in message
    assert lines[-1] in message


async def test_a_named_volume_keeps_its_data_for_the_next_deployment(
    stack: Stack, base_image: str
) -> None:
    text = f"""
services:
  web:
    image: {base_image}
    command: ["httpd", "-f", "-p", "8000", "-h", "/data"]
    ports: ["8000"]
    volumes: [data:/data]
volumes:
  data: {{}}
"""
    first, second = unique("ghst-test-shop"), unique("ghst-test-shop")
    port = free_port()
    file = stack.render(text, first, port, deployment_id=1)
    await stack.runner.up(first, file, lambda line: None)
    web = stack.client.containers.get(stack.containers(first)["web"]["Id"])
    result = await asyncio.to_thread(web.exec_run, ["sh", "-c", "echo kept > /data/index.html"])
    assert result.exit_code == 0
    await stack.runner.down(first, file)
    volume = stack.client.volumes.get(volume_name(stack.instance, "shop", "data"))
    assert volume.attrs["Labels"]["ghst.project"] == "shop"

    file = stack.render(text, second, port, deployment_id=2)
    await stack.runner.up(second, file, lambda line: None)
    try:
        assert await wait_for_page(port) == "kept\n"
    finally:
        await stack.runner.down(second, file)


async def test_down_without_the_file_removes_the_stack_by_its_labels(
    stack: Stack, base_image: str
) -> None:
    name = unique("ghst-test-shop")
    file = stack.render(two_services(base_image), name, free_port())
    await stack.runner.up(name, file, lambda line: None)
    assert set(stack.containers(name)) == {"web", "worker"}
    file.unlink()
    await stack.runner.down(name, file)
    assert stack.containers(name) == {}
    assert stack.networks(name) == []


async def test_the_compose_command_is_detected_or_reported_missing() -> None:
    runner = ComposeRunner()
    command = await runner.command()
    assert command in (["docker", "compose"], ["docker-compose"])
    assert await runner.version() == (2 if command == ["docker", "compose"] else 1)
    assert await ComposeRunner(command="docker-compose").command() == ["docker-compose"]
    with pytest.raises(UnavailableError, match="Compose is not installed on this server"):
        await ComposeRunner(command="ghst-no-such-compose").command()


async def test_every_option_the_panel_keeps_is_accepted_by_compose(
    stack: Stack, base_image: str
) -> None:
    text = f"""
services:
  web:
    build: .
    ports: ["8000"]
    expose: ["8000"]
    user: nobody
    working_dir: /www
    read_only: true
    hostname: shop
    stop_grace_period: 5s
    stop_signal: SIGTERM
    shm_size: 1g
    ulimits: {{nofile: {{soft: 1024, hard: 2048}}}}
    cap_drop: [NET_RAW]
    extra_hosts: ["legacy.local:127.0.0.1"]
    tmpfs: [/tmp]
    volumes: [data:/data, /cache, {{type: tmpfs, target: /scratch}}]
    healthcheck: {{test: [CMD, "true"], interval: 1s, retries: 3}}
    depends_on: {{db: {{condition: service_healthy}}}}
    labels: [team=blue]
  db:
    image: {base_image}
    command: ["sleep", "3600"]
    ipc: shareable
    networks: {{back: {{aliases: [database]}}, default: {{}}}}
    healthcheck: {{test: [CMD, "true"], interval: 1s, retries: 3}}
    volumes: [{{type: volume, source: pg, target: /var/lib/db, volume: {{nocopy: true}}}}]
  sidecar:
    image: {base_image}
    command: ["sleep", "3600"]
    network_mode: "service:web"
    pid: "service:web"
    volumes_from: ["db:ro"]
volumes: {{data: {{}}, pg: {{labels: {{kept: "yes"}}}}}}
networks: {{back: {{internal: true}}}}
"""
    name = unique("ghst-test-shop")
    port = free_port()
    file = stack.render(text, name, port)
    try:
        await stack.runner.up(name, file, lambda line: None)
        assert await wait_for_page(port) == PAGE
        containers = stack.containers(name)
        assert set(containers) == {"web", "db", "sidecar"}
        web = containers["web"]["HostConfig"]
        assert web["ReadonlyRootfs"] is True
        assert web["ShmSize"] == 64 * MiB  # capped at the memory limit
        assert web["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert web["CapDrop"] == ["NET_RAW"]
        assert containers["web"]["Config"]["User"] == "nobody"
        assert containers["web"]["Config"]["Labels"]["team"] == "blue"
        assert containers["sidecar"]["HostConfig"]["NetworkMode"].startswith("container:")
        assert containers["sidecar"]["HostConfig"]["PortBindings"] in ({}, None)
    finally:
        await stack.runner.down(name, file)
