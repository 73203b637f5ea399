"""Issue 9, point 5: a tenant's limits hold for the project as a whole, and nothing it uploads
can grow without bound or reach the host's private side.

Each test deploys an attacker's archive through the panel's services, on the real dockerd,
and reads what the kernel enforces (cgroup files, docker inspect, what a process inside sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from core.deploy.service import Deployment
from core.runtime.cgroups import CGROUP_ROOT
from core.settings import Settings
from tests.actors import acting, as_user
from tests.conftest import with_settings
from tests.fixtures_deploy import Deploying, page_app
from tests.fixtures_nginx import http_request

pytestmark = pytest.mark.timeout(240)

MEMORY_MB = 64
PIDS = 48
BUILD_PIDS = 40
MAX_SERVICES = 6


@pytest.fixture
def deploy_settings(deploy_settings: Settings) -> Settings:
    """A small plan, so the attacks below go over it quickly."""
    return with_settings(
        deploy_settings,
        app_memory_mb=MEMORY_MB,
        app_pids=PIDS,
        app_cpus=0.5,
        build_pids=BUILD_PIDS,
        build_cpus=0.5,
        compose_max_services=MAX_SERVICES,
    )


async def deployed(deploying: Deploying, project: str, files: dict[str, str]) -> Deployment:
    await deploying.panel.projects.create(acting(deploying.user_id), project)
    return await deploying.deploy_files(project, files, within=120)


def ours(deploying: Deploying) -> dict[str, list[str]]:
    return {"label": [f"ghst.instance={deploying.panel.settings.instance}"]}


def containers_left(client: docker.DockerClient, deploying: Deploying) -> list[str]:
    return [row["Id"] for row in client.api.containers(all=True, filters=ours(deploying))]


def cgroup_value(controller: str, group: str, name: str) -> str:
    return (CGROUP_ROOT / controller / group / name).read_text().strip()


async def exec_in(container: Container, script: str) -> tuple[int, str]:
    """Run a shell script in the container (in a thread: the loop serves the host's listener)."""
    code, output = await asyncio.to_thread(container.exec_run, ["sh", "-c", script])
    return code, output.decode(errors="replace")


def service(client: docker.DockerClient, deployment: Deployment, name: str) -> Container:
    found = client.containers.list(
        filters={
            "label": [
                f"ghst.deployment={deployment.id}",
                f"com.docker.compose.service={name}",
                "ghst.instance",
            ]
        }
    )
    found = [c for c in found if c.labels.get("ghst.project") == deployment.project]
    assert len(found) == 1, found
    container: Container = found[0]
    return container


HTTPD = "    command: ['httpd', '-f', '-p', '8000', '-h', '/www']\n"


# --- many services share one plan ---------------------------------------------------------


WORKER = (
    "    image: {image}\n    depends_on: [web]\n    shm_size: 40m\n    command: ['sleep', '3600']\n"
)
# Run in each worker: 30 more sleeping processes. The forks run in a child shell, because
# ash exits when a fork fails.
FORKS = "sh -c 'i=0; while [ $i -lt 30 ]; do sleep 3600 & i=$((i+1)); echo forked $i; done'"


async def crowd(
    deploying: Deploying, base_image: str, client: docker.DockerClient, project: str
) -> tuple[str, list[Container]]:
    """A web service and four workers, each within the per-container limits; the project's
    cgroup and the workers. Every container runs under that group, with the plan's limits."""
    workers = "".join(f"  w{n}:\n" + WORKER.format(image=base_image) for n in range(4))
    files = {
        "compose.yaml": (f"services:\n  web:\n    build: ./web\n    ports: ['8000']\n{workers}"),
        **{f"web/{name}": text for name, text in page_app(base_image, project).items()},
    }
    done = await deployed(deploying, project, files)
    assert done.state == "running", await deploying.log(done)
    group = deploying.panel.deployer.app_cgroup(project)
    containers = client.containers.list(
        filters={"label": [f"ghst.deployment={done.id}", *ours(deploying)["label"]]}
    )
    assert len(containers) == 5
    for container in containers:
        assert container.attrs["HostConfig"]["CgroupParent"] == f"/{group}"
    assert cgroup_value("pids", group, "pids.max") == str(PIDS)
    assert int(cgroup_value("memory", group, "memory.limit_in_bytes")) == MEMORY_MB << 20
    assert cgroup_value("cpu", group, "cpu.cfs_quota_us") == "50000"
    return group, [container for container in containers if "_w" in container.name]


async def test_many_services_together_cannot_fork_past_the_projects_pids(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    group, workers = await crowd(deploying, base_image, docker_client, "forks")
    # 4 x 30 sleeping processes, each worker within its own 48: more than the plan's 48.
    forked = 0
    for worker in workers:
        try:
            _, output = await exec_in(worker, FORKS)
        except docker.errors.APIError as error:  # not even the exec's own process fits
            output = str(error)
        forked += output.count("forked ")
    assert 0 < forked < PIDS
    assert int(cgroup_value("pids", group, "pids.current")) <= PIDS


async def test_many_services_together_cannot_use_more_than_the_projects_memory(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    group, workers = await crowd(deploying, base_image, docker_client, "hogs")
    # Each worker fills its /dev/shm (40 MiB, within its own 64 MiB), 160 MiB in all; the
    # kernel charges it to the project, which never holds more than the plan.
    for worker in workers:
        with contextlib.suppress(docker.errors.APIError):  # the worker was OOM-killed
            await exec_in(worker, "cat /dev/zero > /dev/shm/fill")
    # What the workers still hold, together, fits the plan. (A worker the kernel killed on the
    # way frees its /dev/shm when its container stops, so a later one may write more.)
    held = 0
    for worker in workers:
        worker.reload()
        if worker.status != "running":
            continue
        with contextlib.suppress(docker.errors.APIError):
            _, output = await exec_in(worker, "ls -l /dev/shm/fill")
            sizes = [line.split()[4] for line in output.splitlines() if "/dev/shm/fill" in line]
            held += int(sizes[-1]) if sizes and sizes[-1].isdigit() else 0
    assert held <= MEMORY_MB << 20
    memory = CGROUP_ROOT / "memory" / group
    peak = int((memory / "memory.max_usage_in_bytes").read_text())
    # The project was pushed to its limit, which one worker's 40 MiB alone cannot do; the kernel
    # charges in batches of pages, so the peak may pass the limit by a few of them.
    assert (MEMORY_MB - 8) << 20 <= peak <= (MEMORY_MB + 1) << 20, peak


async def test_too_many_services_are_refused_with_a_message(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    services = "".join(
        f"  s{n}:\n    image: {base_image}\n    command: ['sleep', '3600']\n"
        for n in range(MAX_SERVICES + 1)
    )
    web = f"  web:\n    image: {base_image}\n{HTTPD}    ports: ['8000']\n"
    files = {"compose.yaml": f"services:\n{web}{services}"}
    done = await deployed(deploying, "crowd", files)
    assert done.state == "failed"
    assert f"has {MAX_SERVICES + 2} services" in done.error, done.error
    assert f"at most {MAX_SERVICES} per project" in done.error
    assert containers_left(docker_client, deploying) == []


# --- tmpfs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mount",
    [
        "    tmpfs: ['/scratch:size=1g']\n",
        "    volumes: [{type: tmpfs, target: /scratch, tmpfs: {size: 2147483648}}]\n",
    ],
)
async def test_a_tmpfs_larger_than_the_plan_is_refused(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient, mount: str
) -> None:
    files = {
        "compose.yaml": (
            f"services:\n  web:\n    image: {base_image}\n{HTTPD}    ports: ['8000']\n{mount}"
        )
    }
    done = await deployed(deploying, "bigtmp", files)
    assert done.state == "failed"
    assert "tmpfs mounts" in done.error and f"project's memory ({MEMORY_MB} MiB)" in done.error
    assert containers_left(docker_client, deploying) == []


async def test_a_tmpfs_without_a_size_gets_one_and_cannot_grow_past_it(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    files = {
        "compose.yaml": (
            "services:\n  web:\n    build: ./web\n    ports: ['8000']\n"
            "    tmpfs: [/scratch]\n"
            "    volumes: [{type: tmpfs, target: /cache}]\n"
        ),
        **{f"web/{name}": text for name, text in page_app(base_image, "tmp").items()},
    }
    done = await deployed(deploying, "tmp", files)
    assert done.state == "running", await deploying.log(done)
    web = service(docker_client, done, "web")
    quarter = (MEMORY_MB << 20) // 4
    assert web.attrs["HostConfig"]["Tmpfs"] == {"/scratch": f"size={quarter}"}
    mounts = {m["Target"]: m for m in web.attrs["HostConfig"]["Mounts"]}
    assert mounts["/cache"]["TmpfsOptions"]["SizeBytes"] == quarter
    for path in ("/scratch", "/cache"):
        code, output = await exec_in(web, f"cat /dev/zero > {path}/fill")
        assert code != 0 and "No space left on device" in output, output
        _, size = await exec_in(web, f"ls -l {path}/fill")
        assert int(size.split()[4]) <= quarter


# --- YAML -----------------------------------------------------------------------------------


def merge_bomb(keys: int = 10_000, copies: int = 10_000) -> str:
    """~320 KB: one mapping of `keys` keys merged into `copies` mappings; a plain YAML load
    builds keys x copies entries (100 million), minutes of CPU."""
    base = ", ".join(f"k{i}: {i}" for i in range(keys))
    lines = [f"x-base: &b {{{base}}}", "x-copies:"]
    lines += [f"  c{i}: {{<<: *b}}" for i in range(copies)]
    return "\n".join(lines) + "\nservices:\n  web:\n    image: x\n"


async def test_a_yaml_merge_bomb_is_refused_quickly_with_a_message(
    deploying: Deploying, docker_client: docker.DockerClient
) -> None:
    # settle()'s bound (120 s) is far below what building the bomb's tree costs.
    done = await deployed(deploying, "bomb", {"compose.yaml": merge_bomb()})
    assert done.state == "failed"
    assert "too large once its anchors are expanded" in done.error, done.error
    assert "merge keys included" in done.error
    assert containers_left(docker_client, deploying) == []


# --- builds -------------------------------------------------------------------------------


async def test_a_fork_bomb_in_a_run_step_fails_the_build_within_the_build_limits(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    group = deploying.panel.deployer.build_cgroup("forky")
    dockerfile = (
        f"FROM {base_image}\n"
        "RUN cat /proc/self/cgroup /sys/fs/cgroup/cpu/cpu.cfs_quota_us\n"
        "RUN i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; wait\n"
        'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
    )
    done = await deployed(deploying, "forky", {"Dockerfile": dockerfile})
    log = await deploying.log(done)
    # The RUN steps ran under the project's build group, with the build CPU quota.
    assert f"pids:/{group}/" in log, log
    assert "50000" in log.splitlines(), log
    assert done.state == "failed"
    assert "step 3/4" in done.error and "can't fork" in done.error, done.error
    assert cgroup_value("pids", group, "pids.max") == str(BUILD_PIDS)
    assert containers_left(docker_client, deploying) == []


# --- networks -----------------------------------------------------------------------------


class Listener:
    """A TCP server on the host that counts the connections it accepts."""

    def __init__(self) -> None:
        self.hits = 0

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nsecret\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


@pytest.fixture
async def host_service() -> AsyncIterator[tuple[Listener, int]]:
    """A private service of the host, listening on all its addresses (a dev database, say)."""
    listener = Listener()
    server = await asyncio.start_server(listener.accept, "0.0.0.0", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield listener, port
    finally:
        server.close()
        await server.wait_closed()


METADATA = "169.254.169.254"
METADATA_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 80))
server.listen()
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    print("hit", flush=True)
    conn.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\ncredentials\\n")
    conn.close()
"""


def _host_addresses() -> list[str]:
    """The host's own addresses (where a service listening on all of them answers)."""
    output = subprocess.run(["hostname", "-I"], check=True, capture_output=True, text=True)
    return output.stdout.split()


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)


@pytest.fixture
def metadata_service(tmp_path: Path) -> Iterator[Path]:
    """A stand-in for the cloud's metadata server: 169.254.169.254:80 in a network namespace
    of its own, routed from the host as a cloud routes it (so containers reach it through the
    host's FORWARD chain). Yields the file its server writes a line to per connection."""
    tag = uuid.uuid4().hex[:6]
    namespace, outside, inside = f"ghst-md-{tag}", f"mdo{tag}", f"mdi{tag}"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("addr", "add", "169.254.170.1/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", "169.254.170.2/30", "dev", inside)
        _ip("-n", namespace, "addr", "add", f"{METADATA}/32", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "route", "add", "default", "via", "169.254.170.1")
        _ip("route", "add", f"{METADATA}/32", "via", "169.254.170.2", "dev", outside)
        hits = tmp_path / "metadata-hits"
        with hits.open("w") as output:
            server = subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", METADATA_SERVER, METADATA],
                stdout=output,
            )
        try:
            for _ in range(100):
                if "ready" in hits.read_text():
                    break
                time.sleep(0.05)
            yield hits
        finally:
            server.kill()
            server.wait()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("route", "del", f"{METADATA}/32", "via", "169.254.170.2")
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", outside)
        _ip("netns", "del", namespace)


async def test_apps_and_builds_cannot_reach_the_hosts_private_services(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    host_service: tuple[Listener, int],
    metadata_service: Path,
) -> None:
    listener, port = host_service
    host_address = (await asyncio.to_thread(_host_addresses))[0]
    # (nc, not wget: the test image's static busybox wget crashes in its resolver.)
    probe = (
        'out=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {0} {1} 2>&1); '
        'case "$out" in *" 200 "*) echo REACHED {0}:{1};; *) echo BLOCKED {0}:{1};; esac; '
        'echo "$out"'
    )
    # The build tries the host's own address and the metadata address from a RUN step.
    web_dockerfile = page_app(base_image, "isolated")["Dockerfile"].replace(
        "EXPOSE",
        f"RUN {probe.format(host_address, port)}; {probe.format(METADATA, 80)}\nEXPOSE",
    )
    files = {
        "compose.yaml": (
            "services:\n"
            "  web:\n    build: ./web\n    ports: ['8000']\n"
            f"  prober:\n    image: {base_image}\n    command: ['sleep', '3600']\n"
        ),
        "web/Dockerfile": web_dockerfile,
        "web/index.html": "isolated",
    }
    done = await deployed(deploying, "walls", files)
    assert done.state == "running", await deploying.log(done)
    log = await deploying.log(done)
    lines = log.splitlines()  # whole lines: the step's own text names them too
    assert f"BLOCKED {host_address}:{port}" in lines and f"BLOCKED {METADATA}:80" in lines, log

    # The running app tries the host through its network's gateway, and the metadata address.
    prober = service(docker_client, done, "prober")
    network = next(iter(prober.attrs["NetworkSettings"]["Networks"].values()))
    gateway = network["Gateway"]
    for host, target_port in ((gateway, port), (host_address, port), (METADATA, 80)):
        _, output = await exec_in(prober, probe.format(host, target_port))
        assert f"BLOCKED {host}:{target_port}" in output, (output, await _diagnose(network))
    assert listener.hits == 0
    assert "hit" not in await asyncio.to_thread(metadata_service.read_text)

    # What it should reach, it reaches: its own stack, and the site through nginx. (By
    # address: the test image's static busybox cannot resolve names.)
    web = service(docker_client, done, "web")
    address = next(iter(web.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    _, output = await exec_in(prober, probe.format(address, 8000))
    assert f"REACHED {address}:8000" in output and "isolated" in output, output
    page = await http_request(deploying.router, "walls")
    assert (page.status, page.text.strip()) == (200, "isolated")


async def test_limits_emptied_by_a_reboot_are_restored_by_the_worker(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    """After a reboot docker restarts the containers itself, under parent cgroups it makes
    without limits; the worker's periodic pass (at its start too) sets them again."""
    done = await deployed(deploying, "reboot", page_app(base_image, "back"))
    assert done.state == "running", await deploying.log(done)
    group = deploying.panel.deployer.app_cgroup("reboot")
    for controller, name, value in (
        ("pids", "pids.max", "max"),
        ("cpu", "cpu.cfs_quota_us", "-1"),
    ):
        await asyncio.to_thread((CGROUP_ROOT / controller / group / name).write_text, value)
    await deploying.panel.deployer.confine_running()
    assert cgroup_value("pids", group, "pids.max") == str(PIDS)
    assert cgroup_value("cpu", group, "cpu.cfs_quota_us") == "50000"

    # Deleting the project removes its groups, in every hierarchy docker made them in.
    await deploying.panel.deployments.delete_project(as_user(deploying.user_id), "reboot", "reboot")
    build = deploying.panel.deployer.build_cgroup("reboot")
    left = await asyncio.to_thread(
        lambda: [str(path) for path in CGROUP_ROOT.glob("*/*") if path.name in (group, build)]
    )
    assert left == []


async def _diagnose(network: dict[str, str]) -> str:
    """What the host's routing and firewall looked like when a probe got through."""
    commands = [
        ["iptables", "-S", "DOCKER-USER"],
        ["iptables", "-S", "INPUT"],
        ["ip", "-o", "addr", "show", "to", network["Gateway"]],
        ["ip", "route", "get", METADATA],
    ]
    outputs = []
    for command in commands:
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        outputs.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return "\n".join(outputs)
