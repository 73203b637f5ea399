"""Issue 9, points 4 and 5: a tenant's output cannot break a deployment or drive a viewer's
terminal, and nothing a tenant does grows without bound (volumes, build layers, deployment rows,
logs, nginx's logs, a worker's time, the queue).

Every test uploads an archive and deploys it through the panel's services with a real worker,
against the real dockerd, PostgreSQL and nginx, as a tenant would from the dashboard. Docker
objects are looked for by this test's own instance label, never by a deployment id alone.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import docker
import pytest

from core.deploy.queue import LOG_TRUNCATED, WORKER_DIED
from core.deploy.service import Deployment
from core.panel import Panel
from core.routing import nginx as nginx_module
from core.routing.nginx import NginxProcess, NginxRouter
from core.settings import Settings
from tests.actors import acting, as_user
from tests.conftest import reset_state, with_settings
from tests.fixtures_deploy import Deploying, counter_app, eventually, page_app, running_worker
from tests.fixtures_docker import descendants
from tests.fixtures_nginx import TEST_DOMAIN, http_request
from tests.services import free_port, temp_root

pytestmark = pytest.mark.timeout(240)

# What a hostile build prints: NUL, invalid UTF-8, a lone surrogate's bytes, a terminal title
# change, an OSC 52 clipboard write, a screen clear, C1 CSI, DEL and a bell.
JUNK = (
    b"junk-start a\x00b \xff\xfe\xed\xa0\x80 \x1b]0;pwned-title\x07"
    b"\x1b]52;c;cm0gLXJmIH4=\x1b\\\x1b[2J\x1b[31mred\x1b[0m \xc2\x9b6n \x7f\x08\x07 junk-end\n"
)
FORBIDDEN = ["\x00", "\x1b", "\x07", "\x08", "\x7f", "\x9b", "\r", "pwned-title", "cm0gLXJm"]


def junk_app(base_image: str, *, run: str, cmd: str) -> dict[str, str | bytes]:
    return {
        "Dockerfile": (
            f"FROM {base_image}\nCOPY junk.bin /junk.bin\nCOPY index.html /www/index.html\n"
            f"RUN {run}\nEXPOSE 8000\nCMD {cmd}\n"
        ),
        "junk.bin": JUNK,
        "index.html": "fine",
    }


def assert_clean(text: str) -> None:
    for bad in FORBIDDEN:
        assert bad not in text, (bad, text)
    text.encode("utf-8")  # no lone surrogate either


@asynccontextmanager
async def deploying_with(
    deploy_settings: Settings, nginx_router: NginxRouter, *, worker: bool = True, **changes: object
) -> AsyncIterator[Deploying]:
    """A panel with these settings, a user "alice" and (unless told not to) a worker;
    everything this test's instance made is removed after."""
    settings = with_settings(deploy_settings, **changes)
    await reset_state(settings)
    panel = await Panel.open(settings)
    try:
        user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
        if worker:
            async with running_worker(panel):
                yield Deploying(panel, nginx_router, user.id)
        else:
            yield Deploying(panel, nginx_router, user.id)
    finally:
        await panel.engine.remove_labelled({})
        await panel.close()


def ours(deploying: Deploying) -> dict[str, str]:
    return {"label": f"ghst.instance={deploying.panel.settings.instance}"}


# --- point 4: any bytes in a build's output --------------------------------------------------


async def test_a_build_printing_nul_invalid_utf8_and_escapes_deploys_and_reads_back_clean(
    deploying: Deploying, base_image: str
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "noisy")
    files = junk_app(
        base_image,
        run="cat /junk.bin",
        cmd='["sh", "-c", "cat /junk.bin; exec httpd -f -p 8000 -h /www"]',
    )
    done = await deploying.deploy_files("noisy", files)
    log = await deploying.log(done)
    assert done.state == "running", (done.error, log)
    assert "junk-start" in log and "junk-end" in log and "Live at" in log
    assert "\ufffd" in log  # the NUL and the invalid bytes are shown, not dropped silently
    assert_clean(log)
    assert (await http_request(deploying.router, "noisy")).text.strip() == "fine"

    # The app prints the same on start: the dashboard's live logs get it cleaned too.
    stream = panel.deployments.runtime_logs(as_user(user), "noisy", tail=50)
    try:
        line = await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    assert "junk-start" in line and "junk-end" in line
    assert_clean(line)


async def test_a_build_that_fails_after_printing_nul_fails_with_its_own_error(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "broken")
    files = junk_app(base_image, run="cat /junk.bin; exit 3", cmd='["true"]')
    done = await deploying.deploy_files("broken", files)
    assert done.state == "failed"
    # The build's own reason, with its last output, not "the worker stopped".
    assert "returned a non-zero code: 3" in done.error, done.error
    assert "junk-start" in done.error
    assert WORKER_DIED not in done.error
    assert_clean(done.error)
    log = await deploying.log(done)
    assert "junk-start" in log and "Failed: " in log
    assert_clean(log)
    assert docker_client.api.containers(all=True, filters=ours(deploying)) == []


# --- point 5: disk leaks -----------------------------------------------------------------------


async def test_a_failed_build_leaves_no_layers_behind(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    await deploying.panel.projects.create(acting(deploying.user_id), "layers")
    base_id = docker_client.images.get(base_image).id
    before = set(descendants(docker_client, base_id))
    unique = uuid.uuid4().hex  # no cache hit on an earlier run's steps
    files: dict[str, str | bytes] = {
        "Dockerfile": (
            f"FROM {base_image}\nCOPY a.txt /a.txt\nRUN echo {unique} > /b.txt\n"
            "COPY c.txt /c.txt\nRUN false\n"
        ),
        "a.txt": unique,
        "c.txt": unique,
    }
    done = await deploying.deploy_files("layers", files)
    assert done.state == "failed" and "RUN false" in done.error
    # Three steps committed an image each before the failure: none is left.
    assert set(descendants(docker_client, base_id)) - before == set()


async def test_a_build_cancelled_by_the_deadline_leaves_no_layers_behind(
    deploy_settings: Settings,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    base_id = docker_client.images.get(base_image).id
    before = set(descendants(docker_client, base_id))
    async with deploying_with(deploy_settings, nginx_router, deploy_timeout=3.0) as deploying:
        await deploying.panel.projects.create(acting(deploying.user_id), "slowpoke")
        unique = uuid.uuid4().hex
        files: dict[str, str | bytes] = {
            "Dockerfile": f"FROM {base_image}\nCOPY a.txt /a.txt\nRUN sleep 60\n",
            "a.txt": unique,
        }
        done = await deploying.deploy_files("slowpoke", files)
        assert done.state == "failed"
        assert "took longer than 3 s, the most one deployment may take" in done.error
        assert docker_client.api.containers(all=True, filters=ours(deploying)) == []
    assert set(descendants(docker_client, base_id)) - before == set()


def volumes_of(client: docker.DockerClient, container_id: str) -> dict[str, str]:
    """{destination: volume name} of a container's volume mounts."""
    mounts = client.api.inspect_container(container_id)["Mounts"]
    return {m["Destination"]: m["Name"] for m in mounts if m["Type"] == "volume"}


def volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_volume(name)
    except docker.errors.NotFound:
        return False
    return True


async def test_anonymous_volumes_go_with_their_containers(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    """A Dockerfile's VOLUME makes an anonymous volume per container: a redeploy (and a failed
    attempt) must not leave the old one behind."""
    await deploying.panel.projects.create(acting(deploying.user_id), "hoarder")
    files: dict[str, str | bytes] = dict(
        page_app(base_image, "v", extra_dockerfile="VOLUME /cache\n")
    )
    first = await deploying.deploy_files("hoarder", files)
    assert first.state == "running", await deploying.log(first)
    filters = {"label": [f"ghst.deployment={first.id}", ours(deploying)["label"]]}
    (container,) = docker_client.api.containers(filters=filters)
    anonymous = volumes_of(docker_client, container["Id"])["/cache"]

    second = await deploying.deploy_files("hoarder", files)
    assert second.state == "running", await deploying.log(second)

    async def retired() -> bool:
        return not docker_client.api.containers(all=True, filters=filters)

    await eventually(retired)
    assert not volume_exists(docker_client, anonymous)


async def test_a_compose_redeploy_removes_anonymous_volumes_and_keeps_named_ones(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel = deploying.panel
    await panel.projects.create(acting(deploying.user_id), "stash")
    files = counter_app(base_image, "start", "'counter:/data', '/scratch'")
    first = await deploying.deploy_files("stash", files)
    assert first.state == "running", await deploying.log(first)
    filters = {"label": [f"ghst.deployment={first.id}", ours(deploying)["label"]]}
    (container,) = docker_client.api.containers(filters=filters)
    mounts = volumes_of(docker_client, container["Id"])
    anonymous, named = mounts["/scratch"], mounts["/data"]

    second = await deploying.deploy_files("stash", files)
    assert second.state == "running", await deploying.log(second)

    async def retired() -> bool:
        return not docker_client.api.containers(all=True, filters=filters)

    await eventually(retired)
    assert not volume_exists(docker_client, anonymous)
    # The tenant's data is still there and still used: the counter went on.
    assert volume_exists(docker_client, named)
    assert (await http_request(deploying.router, "stash")).text.strip() == "start 2"

    # Rolling back switches stacks again: the named volume survives that too.
    back = await deploying.settle(
        await panel.deployments.rollback(as_user(deploying.user_id), "stash", first.id)
    )
    assert back.state == "running", await deploying.log(back)
    assert (await http_request(deploying.router, "stash")).text.strip() == "start 3"
    assert volume_exists(docker_client, named)

    # Only deleting the project removes it.
    await panel.deployments.delete_project(as_user(deploying.user_id), "stash", "stash")
    assert not volume_exists(docker_client, named)


async def test_deployment_history_is_pruned_but_keeps_the_live_and_rollback_ones(
    deploy_settings: Settings, nginx_router: NginxRouter, base_image: str
) -> None:
    async with deploying_with(
        deploy_settings, nginx_router, keep_deployments=2, keep_images=3
    ) as deploying:
        panel, user = deploying.panel, deploying.user_id
        await panel.projects.create(acting(user), "spammer")
        first = await deploying.deploy_files("spammer", page_app(base_image, "one"))
        second = await deploying.deploy_files("spammer", page_app(base_image, "two"))
        assert (first.state, second.state) == ("running", "running")
        failures = [
            await deploying.deploy_files("spammer", page_app(base_image, "x", "RUN false\n"))
            for _ in range(4)
        ]
        assert {failed.state for failed in failures} == {"failed"}
        kept = {d.id for d in await panel.deployments.list(as_user(user), "spammer")}
        # The live one, the one kept for a rollback, and the newest two.
        assert kept == {first.id, second.id, failures[-2].id, failures[-1].id}


async def test_the_build_log_cap_holds_after_a_flush(
    deploy_settings: Settings, nginx_router: NginxRouter, base_image: str
) -> None:
    cap = 20_000
    async with deploying_with(deploy_settings, nginx_router, build_log_max_bytes=cap) as deploying:
        await deploying.panel.projects.create(acting(deploying.user_id), "flood")
        # ~120 KB of multi-byte text printed at once, far past the cap in one flush.
        flood = ("é€😀 flood line\n" * 6000).encode()
        files: dict[str, str | bytes] = {
            "Dockerfile": f"FROM {base_image}\nCOPY flood.txt /flood.txt\nRUN cat /flood.txt\n"
            'EXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/"]\n',
            "flood.txt": flood,
        }
        done = await deploying.deploy_files("flood", files)
        assert done.state == "running", done.error
        log = await deploying.log(done)
        assert len(log.encode()) <= cap
        assert log.endswith(LOG_TRUNCATED) and "flood line" in log


# --- point 5: a deployment's deadline and a fair queue -----------------------------------------


async def test_a_compose_app_with_many_builds_is_stopped_at_the_deployment_deadline(
    deploy_settings: Settings,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """Each build is well within the build timeout; together they are not."""
    async with deploying_with(
        deploy_settings, nginx_router, deploy_timeout=4.0, build_timeout=60.0
    ) as deploying:
        await deploying.panel.projects.create(acting(deploying.user_id), "hog")
        services = "".join(f"  s{n}:\n    build: ./s{n}\n" for n in range(6))
        services += "    ports: ['8000']\n"  # (the last one is the web service)
        files: dict[str, str | bytes] = {"compose.yaml": f"services:\n{services}"}
        for n in range(6):
            files[f"s{n}/Dockerfile"] = (
                f"FROM {base_image}\nRUN sleep 2 && echo {uuid.uuid4()}\n"
                'CMD ["httpd", "-f", "-p", "8000"]\n'
            )
        done = await deploying.deploy_files("hog", files)
        assert done.state == "failed"
        assert "took longer than 4 s, the most one deployment may take" in done.error
        log = await deploying.log(done)
        assert "Failed: The deployment took longer than 4 s" in log
        assert docker_client.api.containers(all=True, filters=ours(deploying)) == []


async def test_one_tenant_queueing_many_projects_does_not_starve_another(
    deploy_settings: Settings, nginx_router: NginxRouter, base_image: str
) -> None:
    """Alice queues three projects, then Bob one; a worker building two at once takes Alice's
    oldest and Bob's, not Alice's first two."""
    async with deploying_with(
        deploy_settings, nginx_router, worker=False, builds_at_once=2, builds_per_user=1
    ) as alice:
        panel = alice.panel
        bob_user = await panel.accounts.sign_up("bob", "bob@example.com", "correct horse battery")
        bob = Deploying(panel, nginx_router, bob_user.id)
        queued: list[Deployment] = []
        for n in range(3):
            await panel.projects.create(acting(alice.user_id), f"alice{n}")
            await alice.upload(f"alice{n}", page_app(base_image, f"alice {n}"))
            queued.append(await panel.deployments.deploy(as_user(alice.user_id), f"alice{n}"))
        await panel.projects.create(acting(bob.user_id), "bobsite")
        await bob.upload("bobsite", page_app(base_image, "bob"))
        theirs = await panel.deployments.deploy(as_user(bob.user_id), "bobsite")
        async with running_worker(panel):
            bobs = await bob.settle(theirs)
            alices = [await alice.settle(job, within=120) for job in queued]
        assert bobs.state == "running" and {a.state for a in alices} == {"running"}, [
            (d.project, d.state, d.error) for d in (bobs, *alices)
        ]
        assert bobs.started_at is not None
        started = [a.started_at for a in alices if a.started_at is not None]
        assert len(started) == 3
        # Alice's jobs one after the other (one at a time), Bob's beside her first.
        assert started[0] < bobs.started_at < started[1] < started[2]
        finished = [a.finished_at for a in alices if a.finished_at is not None]
        assert finished[0] <= started[1] and finished[1] <= started[2]


# --- point 5: nginx's logs -------------------------------------------------------------------


async def test_nginx_logs_are_rotated_and_reopened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Visitors (anyone's) grow the access log: the running nginx's logs are moved aside past
    the limit and nginx writes to a fresh file, so they stay bounded."""
    monkeypatch.setattr(nginx_module, "LOG_CHECK_SECONDS", 0.2, raising=False)
    root = temp_root("ghst-nginx-rotate-")
    router = NginxRouter(prefix=root / "nginx", domain=TEST_DOMAIN, port=free_port())
    router.log_max_bytes = 4096
    process = NginxProcess(router)
    await process.start()
    access = router.prefix / "logs" / "access.log"
    rotated = access.with_name("access.log.1")
    try:
        for n in range(60):
            await http_request(router, f"visitor{n:03d}.{TEST_DOMAIN}", f"/first-wave-{n}")

        async def moved_aside() -> bool:
            return rotated.exists() and b"first-wave" in rotated.read_bytes()

        await eventually(moved_aside, within=30)
        # One rotation is enough to watch: the new file stays far below the limit from here.
        monkeypatch.setattr(nginx_module, "LOG_CHECK_SECONDS", 3600)

        visited = [0.0]

        async def reopened() -> bool:
            # The file is moved before nginx gets its signal: a visitor in between is logged
            # to the moved file, so keep visiting (now and then: nginx flushes every 2 s)
            # until one lands in the new file.
            if time.monotonic() - visited[0] > 1:
                visited[0] = time.monotonic()
                await http_request(router, f"late.{TEST_DOMAIN}", "/second-wave")
            return access.exists() and b"second-wave" in access.read_bytes()

        await eventually(reopened, within=30)
        for n in range(5):
            await http_request(router, f"later{n}.{TEST_DOMAIN}", "/third-wave")

        async def third_wave_logged() -> bool:
            return b"third-wave" in access.read_bytes()

        # Once reopened, nginx writes to the new file (when it flushes), not to the moved one.
        await eventually(third_wave_logged, within=30)
        assert b"third-wave" not in rotated.read_bytes()
        assert access.stat().st_size <= router.log_max_bytes
        assert rotated.stat().st_size <= router.log_max_bytes + 64 * 1024  # its last buffer
    finally:
        await process.stop()
        shutil.rmtree(root, ignore_errors=True)
