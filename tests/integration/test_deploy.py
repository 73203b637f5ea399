"""Deployments end to end against the real dockerd, nginx, PostgreSQL, Redis and storage.

An archive is uploaded through the one upload path, deployed by a worker running in the test's
loop, and checked through nginx with the project's Host header, as a visitor would see it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import docker
import pytest

from core.errors import NotFoundError, ValidationError
from core.panel import Panel
from core.routing.nginx import NginxRouter
from core.settings import Settings
from tests.actors import acting, as_user
from tests.conftest import reset_state, with_settings
from tests.fixtures_deploy import Deploying, counter_app, eventually, page_app, running_worker
from tests.fixtures_nginx import http_request

pytestmark = pytest.mark.timeout(180)


# Summaries only: the SDK's list() inspects each object, which races with the panel removing it.
def containers_left(client: docker.DockerClient, filters: Mapping[str, object]) -> list[str]:
    return [found["Id"] for found in client.api.containers(all=True, filters=filters)]


def mine(panel: Panel, deployment_id: int) -> dict[str, list[str]]:
    """The filter for one deployment's objects of this test's panel alone: other panels on the
    shared dockerd (other test runs) have deployments with the same ids."""
    return {
        "label": [f"ghst.deployment={deployment_id}", f"ghst.installation={panel.installation.id}"]
    }


def images_left(client: docker.DockerClient, filters: Mapping[str, object]) -> set[str]:
    """Tags (or ids, when untagged) of the images matching `filters`."""
    found = client.api.images(filters=filters)
    return {
        tag
        for image in found
        for tag in [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] or [image["Id"]]
    }


async def test_a_dockerfile_app_is_built_run_and_served_through_nginx(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await deploying.panel.projects.create(acting(deploying.user_id), "hello")
    done = await deploying.deploy_files("hello", page_app(base_image, "hello from v1"))
    assert done.state == "running", await deploying.log(done)
    page = await http_request(deploying.router, "hello")
    assert (page.status, page.text.strip()) == (200, "hello from v1")
    probe = deploying.router.probe_headers()
    probed = await http_request(deploying.router, "hello", headers=probe)
    assert probed.headers["x-ghst-deployment"] == str(done.id)
    status = await deploying.panel.deployments.status(as_user(deploying.user_id), "hello")
    assert (status.state, status.live and status.live.id) == ("running", done.id)
    assert status.url == deploying.router.url("hello")
    log = await deploying.log(done)
    assert "Step 1/" in log and "Live at" in log

    # Published on loopback only, with the panel's labels and limits.
    (container,) = docker_client.containers.list(filters=mine(deploying.panel, done.id))
    bindings = container.attrs["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(done.port)}]
    assert container.labels["ghst.project"] == "hello"
    assert container.labels["ghst.user"] == str(deploying.user_id)
    assert container.attrs["HostConfig"]["Memory"] == deploying.panel.settings.app_memory_mb << 20
    assert container.image.tags == [f"{deploying.panel.deployer.namespace}/hello:{done.id}"]


async def test_a_redeploy_switches_without_a_failed_request_and_retires_the_old_version(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await deploying.panel.projects.create(acting(deploying.user_id), "steady")
    first = await deploying.deploy_files("steady", page_app(base_image, "version one"))
    assert first.state == "running", await deploying.log(first)

    results: list[tuple[float, int, str]] = []  # (sent at, status, page)
    stop = asyncio.Event()

    async def visitor() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            page = await http_request(deploying.router, "steady")
            results.append((sent, page.status, page.text.strip()))

    visitors = [asyncio.create_task(visitor()) for _ in range(3)]
    try:
        await asyncio.sleep(0.3)
        second = await deploying.deploy_files("steady", page_app(base_image, "version two"))
        switched = time.monotonic()
        assert second.state == "running", await deploying.log(second)
        await asyncio.sleep(deploying.panel.settings.drain_seconds + 0.5)
    finally:
        stop.set()
        await asyncio.gather(*visitors)
    assert [r for r in results if r[1] != 200] == [] and len(results) > 20
    assert {text for _, _, text in results} == {"version one", "version two"}
    # Once the deployment says it is live, every request gets the new version.
    assert {text for sent, _, text in results if sent > switched} == {"version two"}

    async def old_container_gone() -> bool:
        return not containers_left(docker_client, mine(deploying.panel, first.id))

    await eventually(old_container_gone)
    old = await deploying.panel.deployments.get(as_user(deploying.user_id), "steady", first.id)
    assert old.state == "superseded" and old.can_roll_back_to
    project = await deploying.panel.projects.get(acting(deploying.user_id), "steady")
    assert await deploying.panel.ports.held(project.id) == [second.port]


async def test_a_failed_build_and_an_app_that_never_answers_leave_the_running_version(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await deploying.panel.projects.create(acting(deploying.user_id), "sturdy")
    good = await deploying.deploy_files("sturdy", page_app(base_image, "still here"))
    assert good.state == "running", await deploying.log(good)

    broken = page_app(base_image, "never", extra_dockerfile="RUN false\n")
    failed_build = await deploying.deploy_files("sturdy", broken)
    assert failed_build.state == "failed"
    assert "RUN false" in failed_build.error or "returned a non-zero code" in failed_build.error
    assert "RUN false" in await deploying.log(failed_build)

    silent = page_app(base_image, "never")
    silent["Dockerfile"] = (
        f'FROM {base_image}\nEXPOSE 8000\nCMD ["sleep", "3600"]\n'  # listens on nothing
    )
    unhealthy = await deploying.deploy_files("sturdy", silent)
    assert unhealthy.state == "failed"
    assert "not ready" in unhealthy.error and "PORT" in unhealthy.error

    crashing = page_app(base_image, "never")
    crashing["Dockerfile"] = f'FROM {base_image}\nCMD ["sh", "-c", "echo oops >&2; exit 3"]\n'
    crashed = await deploying.deploy_files("sturdy", crashing)
    assert crashed.state == "failed"
    assert "exit code 3" in crashed.error and "oops" in crashed.error

    page = await http_request(deploying.router, "sturdy")
    assert (page.status, page.text.strip()) == (200, "still here")
    status = await deploying.panel.deployments.status(as_user(deploying.user_id), "sturdy")
    assert status.live is not None and status.live.id == good.id
    # Nothing of the failed attempts is left: containers, images, ports.
    for attempt in (failed_build, unhealthy, crashed):
        leftovers = containers_left(docker_client, mine(deploying.panel, attempt.id))
        assert leftovers == []
        assert images_left(docker_client, mine(deploying.panel, attempt.id)) == set()
    project = await deploying.panel.projects.get(acting(deploying.user_id), "sturdy")
    assert await deploying.panel.ports.held(project.id) == [good.port]


async def test_rollback_stop_start_and_delete(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "cycle")
    first = await deploying.deploy_files("cycle", page_app(base_image, "first"))
    second = await deploying.deploy_files("cycle", page_app(base_image, "second"))
    assert (first.state, second.state) == ("running", "running")

    rollback = await deploying.settle(
        await panel.deployments.rollback(as_user(user), "cycle", first.id)
    )
    assert rollback.state == "running", await deploying.log(rollback)
    assert rollback.image == first.image
    assert "no build" in await deploying.log(rollback)
    assert (await http_request(deploying.router, "cycle")).text.strip() == "first"

    await panel.deployments.stop(as_user(user), "cycle")
    stopped = await http_request(deploying.router, "cycle")
    assert stopped.status == 503 and "cycle" in stopped.text
    assert (await panel.deployments.status(as_user(user), "cycle")).state == "stopped"
    await panel.deployments.start(as_user(user), "cycle")
    assert (await http_request(deploying.router, "cycle")).text.strip() == "first"
    assert (await panel.deployments.status(as_user(user), "cycle")).state == "running"

    project = await panel.projects.get(acting(user), "cycle")
    await panel.deployments.delete_project(as_user(user), "cycle", "cycle")
    label = {"label": "ghst.project=cycle"}
    assert containers_left(docker_client, label) == []
    assert images_left(docker_client, label) == set()
    assert docker_client.api.networks(filters=label) == []
    assert not deploying.router.vhost_path("cycle").exists()
    assert await panel.ports.held(project.id) == []
    assert (await http_request(deploying.router, "cycle")).status == 404
    with pytest.raises(NotFoundError):
        await panel.deployments.status(as_user(user), "cycle")


async def test_env_vars_reach_the_app_at_the_next_restart(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "greeter")
    files = page_app(base_image, "unused")
    files["Dockerfile"] = (
        f"FROM {base_image}\nEXPOSE 8000\n"
        'CMD ["sh", "-c", "echo \\"$GREETING on $PORT\\" > /www/index.html;'
        ' exec httpd -f -p $PORT -h /www"]\n'
    )
    first = await deploying.deploy_files("greeter", files)
    assert first.state == "running", await deploying.log(first)
    assert (await http_request(deploying.router, "greeter")).text.strip() == "on 8000"
    await panel.env.set(acting(user), "greeter", "GREETING", "hej")
    restart = await deploying.settle(await panel.deployments.restart(as_user(user), "greeter"))
    assert restart.state == "running", await deploying.log(restart)
    assert (await http_request(deploying.router, "greeter")).text.strip() == "hej on 8000"


async def test_cancelling_a_build_leaves_the_live_version(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "patient")
    good = await deploying.deploy_files("patient", page_app(base_image, "live"))
    await deploying.upload("patient", page_app(base_image, "slow", "RUN sleep 30\n"))
    slow = await panel.deployments.deploy(as_user(user), "patient")
    await deploying.wait_for(slow, lambda d: d.state == "building")
    await eventually(lambda: _log_has(deploying, slow, "RUN sleep 30"))
    await panel.deployments.cancel(as_user(user), "patient", slow.id)
    ended = await deploying.settle(slow, within=20)
    assert ended.state == "cancelled"
    assert (await http_request(deploying.router, "patient")).text.strip() == "live"
    assert (await panel.deployments.status(as_user(user), "patient")).live.id == good.id  # type: ignore[union-attr]


async def _log_has(deploying: Deploying, deployment, text: str) -> bool:  # type: ignore[no-untyped-def]
    return text in await deploying.log(deployment)


async def test_a_compose_app_is_sanitized_run_and_served_through_nginx(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "stack")
    files = {
        "compose.yaml": (
            "services:\n"
            "  web:\n"
            "    build:\n"
            "      context: ./web\n"
            "    ports: ['8080:8000']\n"
            "    container_name: fixed-name\n"
            "  worker:\n"
            f"    image: {base_image}\n"
            "    command: ['sleep', '3600']\n"
        ),
        **{f"web/{name}": content for name, content in page_app(base_image, "composed").items()},
    }
    done = await deploying.deploy_files("stack", files)
    assert done.state == "running", await deploying.log(done)
    assert done.kind == "compose"
    page = await http_request(deploying.router, "stack")
    assert (page.status, page.text.strip()) == (200, "composed")
    containers = docker_client.containers.list(filters=mine(panel, done.id))
    assert len(containers) == 2
    for container in containers:
        host = container.attrs["HostConfig"]
        assert host["Init"] is True and host["Memory"] == panel.settings.app_memory_mb << 20
        assert container.name != "fixed-name"
        for bindings in (host["PortBindings"] or {}).values():
            assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(done.port)}]

    # A redeploy of a stack without volumes switches without downtime, like a Dockerfile app.
    files["web/index.html"] = "composed again"
    again = await deploying.deploy_files("stack", files)
    assert again.state == "running", await deploying.log(again)
    assert (await http_request(deploying.router, "stack")).text.strip() == "composed again"

    async def first_stack_gone() -> bool:
        return not containers_left(docker_client, mine(panel, done.id))

    await eventually(first_stack_gone)

    # Rolling back to the first stack runs its images again without the archive or a build.
    back = await deploying.settle(await panel.deployments.rollback(as_user(user), "stack", done.id))
    assert back.state == "running", await deploying.log(back)
    assert "no build" in await deploying.log(back)
    assert (await http_request(deploying.router, "stack")).text.strip() == "composed"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("    privileged: true\n", "privileged"),
        ("    network_mode: host\n", "network_mode: host"),
        ("    volumes: ['/etc:/host-etc']\n", "host"),
        ("    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n", "docker.sock"),
        ("    cap_add: [SYS_ADMIN]\n", "cap_add"),
    ],
)
async def test_a_forbidden_compose_option_fails_the_deployment_and_starts_nothing(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    option: str,
    message: str,
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "risky")
    files = {
        "compose.yaml": (
            f"services:\n  web:\n    image: {base_image}\n    ports: ['8000']\n{option}"
        ),
    }
    done = await deploying.deploy_files("risky", files)
    assert done.state == "failed"
    assert message.lower() in done.error.lower(), done.error
    assert "web" in done.error
    instance = {"label": f"ghst.instance={panel.settings.instance}"}
    assert containers_left(docker_client, instance) == []
    assert (await http_request(deploying.router, "risky")).status == 404


async def test_a_stack_with_a_volume_keeps_its_data_across_deployments(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "keeper")
    files = counter_app(base_image, "start")
    first = await deploying.deploy_files("keeper", files)
    assert first.state == "running", await deploying.log(first)
    assert (await http_request(deploying.router, "keeper")).text.strip() == "start 1"
    second = await deploying.deploy_files("keeper", files)
    assert second.state == "running", await deploying.log(second)
    # The old stack was stopped before the new one started: one writer per volume at a time.
    assert "stopping the running version first" in await deploying.log(second)
    assert (await http_request(deploying.router, "keeper")).text.strip() == "start 2"


async def test_runtime_logs_follow_the_live_app_and_only_for_its_owner(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "chatty")
    files = page_app(base_image, "hi")
    files["Dockerfile"] = (
        f"FROM {base_image}\nCOPY index.html /www/index.html\nEXPOSE 8000\n"
        'CMD ["sh", "-c", "echo booted; exec httpd -f -v -p 8000 -h /www"]\n'
    )
    done = await deploying.deploy_files("chatty", files)
    assert done.state == "running", await deploying.log(done)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", "correct horse battery")
    with pytest.raises(NotFoundError):
        async for _ in panel.deployments.runtime_logs(as_user(bob.id), "chatty"):
            pass

    stream = panel.deployments.runtime_logs(as_user(user), "chatty", tail=50)
    try:
        assert "booted" in await asyncio.wait_for(anext(stream), 10)
        # A request made now shows up in the stream.
        await http_request(deploying.router, "chatty", "/from-the-test")
        # (busybox httpd -v logs each answer's status: a 404 for this path)
        async with asyncio.timeout(10):
            async for line in stream:
                if "response:404" in line:
                    break
    finally:
        await stream.aclose()


async def test_a_dockerfile_healthcheck_decides_when_the_app_is_ready(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "checked")
    healthy = page_app(
        base_image, "checked", "HEALTHCHECK --interval=1s --retries=2 CMD ls /www/index.html\n"
    )
    done = await deploying.deploy_files("checked", healthy)
    assert done.state == "running", await deploying.log(done)
    sick = page_app(
        base_image, "never", "HEALTHCHECK --interval=1s --retries=2 CMD ls /no-such-file\n"
    )
    failed = await deploying.deploy_files("checked", sick)
    assert failed.state == "failed" and "HEALTHCHECK" in failed.error
    assert (await http_request(deploying.router, "checked")).text.strip() == "checked"


async def test_old_images_beyond_the_kept_few_are_pruned_and_cannot_be_rolled_back_to(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    keep = panel.settings.keep_images
    await panel.projects.create(acting(user), "pruned")
    done = [
        await deploying.deploy_files("pruned", page_app(base_image, f"v{n}"))
        for n in range(keep + 2)
    ]
    assert [d.state for d in done] == ["running"] * len(done)

    async def images() -> set[str]:
        return images_left(docker_client, {"label": "ghst.project=pruned"})

    expected = {d.image for d in done[-keep:]}

    async def pruned() -> bool:
        return await images() == expected

    await eventually(pruned)
    oldest = await panel.deployments.get(as_user(user), "pruned", done[0].id)
    assert oldest.image is None and not oldest.can_roll_back_to
    with pytest.raises(ValidationError, match="pruned"):
        await panel.deployments.rollback(as_user(user), "pruned", done[0].id)
    kept = await deploying.settle(
        await panel.deployments.rollback(as_user(user), "pruned", done[-keep].id)
    )
    assert kept.state == "running"


async def test_builds_run_one_at_a_time_by_default_and_more_when_configured(
    deploy_settings: Settings, nginx_router: NginxRouter, base_image: str
) -> None:
    # One user's builds may overlap only when both the worker and the per-user cap allow it.
    await reset_state(deploy_settings)
    panel = await Panel.open(with_settings(deploy_settings, builds_per_user=2))
    try:
        await _builds_one_then_two_at_a_time(panel, nginx_router, base_image)
    finally:
        await panel.engine.remove_labelled({})
        await panel.close()


async def _builds_one_then_two_at_a_time(
    panel: Panel, nginx_router: NginxRouter, base_image: str
) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    deploying = Deploying(panel, nginx_router, user.id)
    queued = []
    for name in ("first", "second"):
        await panel.projects.create(acting(user.id), name)
        await deploying.upload(name, page_app(base_image, name, "RUN sleep 2\n"))
        queued.append(await panel.deployments.deploy(as_user(user.id), name))
    async with running_worker(panel):
        await deploying.wait_for(queued[0], lambda d: d.state == "building")
        # One build at a time: the second project waits in the queue.
        assert (
            await panel.deployments.get(as_user(user.id), "second", queued[1].id)
        ).state == "queued"
        await deploying.settle(queued[0])
        await deploying.settle(queued[1])
    again = []
    for name in ("first", "second"):
        await deploying.upload(name, page_app(base_image, name + " again", "RUN sleep 2\n"))
        again.append(await panel.deployments.deploy(as_user(user.id), name))
    async with running_worker(panel, concurrency=2):

        async def both_building() -> bool:
            states = [
                (await panel.deployments.get(as_user(user.id), d.project, d.id)).state
                for d in again
            ]
            return states == ["building", "building"]

        await eventually(both_building)
        for deployment in again:
            assert (await deploying.settle(deployment)).state == "running"


async def test_containers_a_crash_left_behind_are_swept_and_live_ones_kept(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "tidy")
    old = await deploying.deploy_files("tidy", page_app(base_image, "old"))
    live = await deploying.deploy_files("tidy", page_app(base_image, "new"))
    assert (old.state, live.state) == ("running", "running")
    project = await panel.projects.get(acting(user), "tidy")

    async def old_gone() -> bool:
        return not containers_left(docker_client, mine(panel, old.id))

    await eventually(old_gone)
    # What a panel killed during the drain leaves: the old version still running.
    await panel.ports.allocate(project.id, old.id)
    assert old.image is not None and old.port is not None
    await panel.engine.run(
        name=f"{panel.deployer.namespace}-tidy-{old.id}-left",
        image=old.image,
        host_port=old.port,
        app_port=8000,
        env={},
        labels={"ghst.project": "tidy", "ghst.deployment": str(old.id), "ghst.user": str(user)},
        limits=panel.deployer.app_limits(),
        network=f"{panel.deployer.namespace}-tidy",
    )
    # A recent switch is left alone: another worker may still be draining it.
    assert await panel.deployer.sweep() == []
    assert await panel.deployer.sweep(grace=0) == [old.id]
    assert await old_gone()
    assert await panel.ports.held(project.id) == [live.port]
    assert (await http_request(deploying.router, "tidy")).text.strip() == "new"
