"""The Docker adapter against this machine's dockerd, with images built FROM the busybox base.

Each test gets an engine with an instance name of its own, so everything it makes carries a
unique `ghst.instance` label and is removed at the end (through the SDK directly, not only
through the code under test). Nothing is pulled: the only base image is the local busybox one,
and the "missing" base image names a registry on a closed local port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest

from core.errors import ConflictError, NotFoundError, UnavailableError
from core.runtime.engine import (
    INSTANCE_LABEL,
    BuildFailed,
    ContainerState,
    DockerEngine,
    ImageInfo,
    Limits,
)
from tests.services import free_port

T = TypeVar("T")

MiB = 1 << 20
LIMITS = Limits(memory_bytes=96 * MiB, nano_cpus=500_000_000, pids=64)
BUILD_MEMORY = 512 * MiB
HTTPD = 'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]'


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def purge(client: docker.DockerClient, instance: str) -> None:
    """Everything labelled with this instance, whatever the engine under test did."""
    label = {"label": [f"{INSTANCE_LABEL}={instance}"]}
    for row in client.api.containers(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(row["Id"], force=True)
    for row in sorted(client.api.images(filters=label), key=lambda row: -row["Created"]):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(row["Id"], force=True)
    for row in client.api.networks(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_network(row["Id"])


@pytest.fixture
async def engine(docker_client: docker.DockerClient) -> AsyncIterator[DockerEngine]:
    instance = unique("ghst-test")
    engine = DockerEngine(instance=instance)
    try:
        yield engine
    finally:
        await engine.close()
        await asyncio.to_thread(purge, docker_client, instance)


@pytest.fixture
def project() -> dict[str, str]:
    return {"ghst.project": unique("shop"), "ghst.deployment": "7", "ghst.user": "42"}


def write_context(folder: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return folder


class LogLines:
    """An on_log callback that remembers the lines and the threads it was called on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.threads: set[int] = set()
        self.arrived = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.threads.add(threading.get_ident())
        self.arrived.set()

    async def wait_for(self, text: str) -> None:
        while not any(text in line for line in self.lines):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 30)


async def build(
    engine: DockerEngine,
    context: Path,
    labels: dict[str, str],
    *,
    on_log: Callable[[str], None] | None = None,
    timeout: float = 60,  # noqa: ASYNC109 (passed on to build)
    memory_bytes: int = BUILD_MEMORY,
    tag: str | None = None,
) -> tuple[str, ImageInfo]:
    tag = tag or f"ghst-test/{unique('app')}:1"
    info = await engine.build(
        context,
        tag=tag,
        labels=labels,
        on_log=on_log or (lambda line: None),
        timeout=timeout,
        memory_bytes=memory_bytes,
    )
    return tag, info


def site_dockerfile(base_image: str, extra: str = "") -> str:
    return f"FROM {base_image}\nCOPY index.html /www/index.html\nEXPOSE 8000\n{extra}{HTTPD}\n"


async def build_site(
    engine: DockerEngine, base_image: str, tmp_path: Path, labels: dict[str, str], extra: str = ""
) -> tuple[str, ImageInfo, str]:
    page = f"<h1>{unique('hello')}</h1>\n"
    context = write_context(
        tmp_path / unique("site"), site_dockerfile(base_image, extra), {"index.html": page}
    )
    tag, info = await build(engine, context, labels)
    return tag, info, page


async def run_site(
    engine: DockerEngine, image: str, labels: dict[str, str], network: str = ""
) -> tuple[str, int, str]:
    name = unique("ghst-test-app")
    port = free_port()
    container = await engine.run(
        name=name,
        image=image,
        host_port=port,
        app_port=8000,
        env={"GREETING": "hi there"},
        labels=labels,
        limits=LIMITS,
        network=network,
    )
    return container, port, name


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float = 20) -> T:
    """The first truthy result of `check`, polled until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {seconds} s")
        await asyncio.sleep(0.1)


async def get_page(port: int) -> str:
    async def attempt() -> str | None:
        try:
            return await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/")
        except (OSError, urllib.error.URLError):
            return None

    return await eventually(attempt)


def build_containers_with(client: docker.DockerClient, marker: str) -> list[dict[str, Any]]:
    """Containers (of any state) whose command mentions `marker`: a build step's container."""
    rows: list[dict[str, Any]] = client.api.containers(all=True)
    return [row for row in rows if marker in row.get("Command", "")]


async def no_build_container_left(client: docker.DockerClient, marker: str) -> None:
    async def gone() -> bool:
        return not await asyncio.to_thread(build_containers_with, client, marker)

    await eventually(gone)


# ------------------------------------------------------------------------------------------------
# build and run


async def test_built_app_answers_on_loopback_only_with_labels_and_limits(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    logs = LogLines()
    page = "<h1>ghst says hello</h1>\n"
    context = write_context(tmp_path / "site", site_dockerfile(base_image), {"index.html": page})
    tag, info = await build(engine, context, project, on_log=logs)

    assert info.exposed_ports == (8000,)
    assert info.has_healthcheck is False
    assert info == await engine.image_info(tag)
    # Steps numbered as the Dockerfile counts them (4), although the labels are steps too.
    steps = [line for line in logs.lines if line.startswith("Step ")]
    assert steps == [
        f"Step 1/4 : FROM {base_image}",
        "Step 2/4 : COPY index.html /www/index.html",
        "Step 3/4 : EXPOSE 8000",
        f"Step 4/4 : {HTTPD}",
    ]
    assert any(line.startswith("Successfully tagged " + tag) for line in logs.lines)
    # Every line arrived on the event loop's thread, so callers can touch asyncio objects.
    assert logs.threads == {threading.get_ident()}
    image_labels = docker_client.images.get(tag).labels
    assert image_labels == {**project, INSTANCE_LABEL: engine.instance}

    network = unique("ghst-test-net")
    await engine.ensure_network(network, project)
    await engine.ensure_network(network, project)  # idempotent
    container, port, name = await run_site(engine, tag, project, network)

    assert await get_page(port) == page
    attrs = docker_client.api.inspect_container(container)
    assert attrs["HostConfig"]["PortBindings"] == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    assert [binding["HostIp"] for binding in attrs["NetworkSettings"]["Ports"]["8000/tcp"]] == [
        "127.0.0.1"
    ]
    assert attrs["Config"]["Labels"] == {**project, INSTANCE_LABEL: engine.instance}
    assert "GREETING=hi there" in attrs["Config"]["Env"]
    assert list(attrs["NetworkSettings"]["Networks"]) == [network]
    host = attrs["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (LIMITS.memory_bytes, LIMITS.memory_bytes)
    assert host["NanoCpus"] == LIMITS.nano_cpus
    assert host["PidsLimit"] == LIMITS.pids
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Init"] is True
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }

    state = await engine.state(name)
    assert (state.id, state.name, state.running, state.exit_code) == (container, name, True, None)
    assert (state.health, state.error, state.oom_killed) == (None, "", False)
    assert [found.id for found in await engine.containers(project)] == [container]
    assert [tags for _, tags, _ in await engine.images(project)] == [(tag,)]
    assert await engine.networks(project) == [network]
    assert await engine.containers({"ghst.project": unique("other")}) == []


async def test_copy_sees_the_build_folder_as_it_is(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(
        tmp_path / "copy",
        f"FROM {base_image}\nCOPY . /ctx/\nRUN ls -A /ctx | busybox tr '\\n' ' '\n",
        {"index.html": "hi", "app.sh": "echo app"},
    )
    logs = LogLines()
    await build(engine, context, project, on_log=logs)
    assert "Dockerfile app.sh index.html " in logs.lines
    assert sum(line.startswith("Labelling the image: ") for line in logs.lines) == 1


async def test_labels_that_need_quoting_and_a_dockerfile_ending_mid_line_still_label_the_image(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    labels = {**project, "ghst.note": "two words"}
    # A continued last line: nothing may be appended to this Dockerfile's text.
    context = write_context(
        tmp_path / "odd", f'FROM {base_image}\n# a comment\nCMD ["sh", "-c", \\\n  "echo hi"] \\\n'
    )
    logs = LogLines()
    tag, _ = await build(engine, context, labels, on_log=logs)
    assert docker_client.images.get(tag).labels == {**labels, INSTANCE_LABEL: engine.instance}
    steps = [line for line in logs.lines if line.startswith("Step ")]
    assert steps == [f"Step 1/2 : FROM {base_image}", 'Step 2/2 : CMD ["sh", "-c",   "echo hi"]']


async def test_stop_start_and_remove_a_container(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    tag, _, page = await build_site(engine, base_image, tmp_path, project)
    container, port, name = await run_site(engine, tag, project)
    await get_page(port)

    await engine.stop(container)
    stopped = await engine.state(container)
    assert stopped.running is False
    assert stopped.exit_code is not None
    await engine.stop(container)  # already stopped: fine

    await engine.start(name)
    assert await get_page(port) == page
    assert (await engine.state(name)).running is True

    await engine.remove_container(name)
    with pytest.raises(NotFoundError):
        await engine.state(name)
    await engine.remove_container(name)  # already gone: fine
    await engine.remove_image(tag)
    with pytest.raises(NotFoundError):
        await engine.image_info(tag)
    await engine.remove_image(tag)  # already gone: fine


async def test_an_image_in_use_is_kept_by_remove_image(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    tag, info, _ = await build_site(engine, base_image, tmp_path, project)
    await run_site(engine, tag, project)
    await engine.remove_image(info.id)
    assert (await engine.image_info(tag)).id == info.id


async def test_a_container_that_exits_reports_its_exit_code_and_logs(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(
        tmp_path / "crash",
        f'FROM {base_image}\nCMD ["sh", "-c", "echo bye from $GREETING; exit 3"]\n',
    )
    tag, info = await build(engine, context, project)
    assert info.exposed_ports == ()
    container, _, _ = await run_site(engine, tag, project)

    async def exited() -> ContainerState | None:
        state = await engine.state(container)
        return state if state.exit_code is not None else None

    state = await eventually(exited)
    assert state.running is False
    assert state.exit_code == 3
    assert "bye from hi there" in await engine.logs_tail(container, lines=5)


async def test_run_never_pulls_a_missing_image(
    engine: DockerEngine, docker_client: docker.DockerClient, project: dict[str, str]
) -> None:
    name = unique("ghst-test-app")
    with pytest.raises(NotFoundError, match="is not on this server"):
        await engine.run(
            name=name,
            image=f"localhost:1/{unique('missing')}:1",
            host_port=free_port(),
            app_port=8000,
            env={},
            labels=project,
            limits=LIMITS,
            network="",
        )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)


async def test_a_taken_host_port_is_a_conflict_and_leaves_no_container(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    tag, _, _ = await build_site(engine, base_image, tmp_path, project)
    _, port, _ = await run_site(engine, tag, project)
    name = unique("ghst-test-app")
    with pytest.raises(ConflictError):
        await engine.run(
            name=name,
            image=tag,
            host_port=port,
            app_port=8000,
            env={},
            labels=project,
            limits=LIMITS,
            network="",
        )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)


async def test_the_same_name_twice_is_a_conflict(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    tag, _, _ = await build_site(engine, base_image, tmp_path, project)
    _, _, name = await run_site(engine, tag, project)
    with pytest.raises(ConflictError, match=name):
        await engine.run(
            name=name,
            image=tag,
            host_port=free_port(),
            app_port=8000,
            env={},
            labels=project,
            limits=LIMITS,
            network="",
        )


async def test_healthcheck_image_becomes_healthy(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    check = (
        "HEALTHCHECK --interval=1s --timeout=2s --retries=3 "
        "CMD wget -q -O /dev/null http://127.0.0.1:8000/ || exit 1\n"
    )
    tag, info, _ = await build_site(engine, base_image, tmp_path, project, extra=check)
    assert info.has_healthcheck is True
    container, _, _ = await run_site(engine, tag, project)

    async def healthy() -> str | None:
        health = (await engine.state(container)).health
        assert health in ("starting", "healthy")
        return health if health == "healthy" else None

    assert await eventually(healthy) == "healthy"


# ------------------------------------------------------------------------------------------------
# builds that fail or are stopped


async def test_a_failing_run_step_names_the_step_and_its_output(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    logs = LogLines()
    context = write_context(
        tmp_path / "fail",
        f"FROM {base_image}\nRUN echo installing && echo 'no such package' >&2 && false\n",
    )
    tag = f"ghst-test/{unique('broken')}:1"
    with pytest.raises(BuildFailed) as failed:
        await build(engine, context, project, on_log=logs, tag=tag)
    message = str(failed.value)
    assert message.startswith(
        "The build failed at step 2/2 (RUN echo installing && echo 'no such package' >&2 && false):"
        " The command '/bin/sh -c echo installing && echo 'no such package' >&2 && false'"
        " returned a non-zero code: 1"
    )
    # The step's last output lines follow (stdout and stderr, in whatever order they came).
    assert sorted(message.splitlines()[1:]) == ["installing", "no such package"]
    assert "no such package" in logs.lines  # stderr arrives without the builder's colour codes
    with pytest.raises(NotFoundError):
        await engine.image_info(tag)


async def test_a_missing_base_image_is_named(
    engine: DockerEngine, tmp_path: Path, project: dict[str, str]
) -> None:
    missing = f"localhost:1/{unique('missing')}:1"  # a closed port: nothing leaves the machine
    context = write_context(tmp_path / "nobase", f"FROM {missing}\nRUN true\n")
    with pytest.raises(BuildFailed) as failed:
        await build(engine, context, project)
    assert f"the base image {missing} is not available on this server" in str(failed.value)


async def test_an_invalid_dockerfile_is_refused(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(tmp_path / "invalid", f"FROM {base_image}\nFETCH me a coffee\n")
    with pytest.raises(
        BuildFailed, match=r"^The build could not start: .*unknown instruction: FETCH"
    ):
        await build(engine, context, project)


async def test_build_steps_run_within_the_memory_limit(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    # `tail` keeps its whole (newline-free) input in memory: 200 MiB.
    greedy = write_context(
        tmp_path / "greedy",
        f"FROM {base_image}\nRUN set -o pipefail; busybox head -c 200m /dev/zero | busybox tail | busybox wc -c\n",
    )
    with pytest.raises(BuildFailed, match="returned a non-zero code: 137"):
        await build(engine, greedy, project, memory_bytes=64 * MiB)
    # The same step fits in a larger limit, so it was the limit that stopped it.
    await build(engine, greedy, project, memory_bytes=512 * MiB)


async def test_a_build_over_its_time_is_stopped_and_cleaned_up(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    marker = unique("slow")
    context = write_context(tmp_path / "slow", f"FROM {base_image}\nRUN sleep 120 # {marker}\n")
    logs = LogLines()
    with pytest.raises(BuildFailed, match=r"^The build took longer than 2 s and was stopped\.$"):
        await build(engine, context, project, on_log=logs, timeout=2)
    assert any(line.startswith(" ---> Running in ") for line in logs.lines)
    # forcerm: dockerd removes the step's container once the build is aborted.
    await no_build_container_left(docker_client, marker)


async def test_cancelling_the_build_task_stops_the_build(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    marker = unique("cancel")
    context = write_context(tmp_path / "slow", f"FROM {base_image}\nRUN sleep 120 # {marker}\n")
    logs = LogLines()
    task = asyncio.create_task(build(engine, context, project, on_log=logs, timeout=300))
    await logs.wait_for(" ---> Running in ")
    assert build_containers_with(docker_client, marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await no_build_container_left(docker_client, marker)
    seen = len(logs.lines)
    await asyncio.sleep(0.2)
    assert len(logs.lines) == seen  # nothing more after build() ended


async def test_the_event_loop_keeps_running_during_a_build(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(tmp_path / "ticks", f"FROM {base_image}\nRUN sleep 1 # {unique('t')}\n")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await build(engine, context, project)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed >= 1
    # The loop kept running while the build streamed: roughly one tick per 10 ms elapsed.
    assert ticks >= (elapsed / 0.01) * 0.5


# ------------------------------------------------------------------------------------------------
# runtime logs


def counter_dockerfile(base_image: str) -> str:
    loop = 'i=0; while true; do echo "tick $i ✓"; i=$((i+1)); sleep 0.2; done'
    return f"FROM {base_image}\nCMD {json.dumps(['sh', '-c', loop], ensure_ascii=False)}\n"


def tick_number(line: str) -> int:
    return int(line.rsplit("tick ", 1)[1].split()[0])


def log_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ghst-docker-logs"]


async def test_follow_logs_gives_recent_then_live_lines_and_stops_when_closed(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(tmp_path / "ticker", counter_dockerfile(base_image))
    tag, _ = await build(engine, context, project)
    container, _, name = await run_site(engine, tag, project)

    async def some_lines() -> bool:
        return (await engine.logs_tail(container)).count("\n") >= 4

    await eventually(some_lines)
    stream = engine.follow_logs([name], tail=2)
    lines = [await anext(stream) for _ in range(6)]
    first_live = tick_number(lines[2])
    existing = (await engine.logs_tail(container, lines=200)).splitlines()
    # The first two are the last two lines docker had; then each new one, in order, once.
    assert [tick_number(line) for line in lines] == list(range(first_live - 2, first_live + 4))
    assert lines[0] in existing
    assert all(line.endswith(" ✓") for line in lines)  # UTF-8 decoded, no "\n" left
    assert log_threads()

    await stream.aclose()

    async def threads_ended() -> bool:
        return not log_threads()

    await eventually(threads_ended, seconds=5)


async def test_follow_logs_of_several_containers_prefixes_names_and_ends_with_them(
    engine: DockerEngine, base_image: str, tmp_path: Path, project: dict[str, str]
) -> None:
    context = write_context(tmp_path / "ticker", counter_dockerfile(base_image))
    tag, _ = await build(engine, context, project)
    _, _, first = await run_site(engine, tag, project)
    _, _, second = await run_site(engine, tag, project)

    seen: dict[str, int] = {first: 0, second: 0}
    stream = engine.follow_logs([first, second], tail=0)
    async for line in stream:
        name, _, text = line.partition(" | ")
        assert text.startswith("tick ")
        seen[name] += 1
        if min(seen.values()) >= 2:
            break
    assert set(seen) == {first, second}

    # Once both containers stop, their streams end and so does the iterator.
    stream = engine.follow_logs([first, second], tail=1)
    assert " | tick " in await anext(stream)
    await asyncio.gather(engine.stop(first, timeout=1), engine.stop(second, timeout=1))
    rest = [line async for line in stream]
    assert all(" | tick " in line for line in rest)

    async def threads_ended() -> bool:
        return not log_threads()

    await eventually(threads_ended, seconds=5)


async def test_follow_logs_of_a_missing_container_is_not_found(engine: DockerEngine) -> None:
    with pytest.raises(NotFoundError):
        await anext(engine.follow_logs([unique("ghst-test-none")]))


# ------------------------------------------------------------------------------------------------
# labels: what the panel may touch


async def test_remove_labelled_removes_one_project_and_nothing_else(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    tmp_path: Path,
    project: dict[str, str],
) -> None:
    other_project = {**project, "ghst.project": unique("other")}
    network = unique("ghst-test-net")
    await engine.ensure_network(network, project)
    tag, _, _ = await build_site(engine, base_image, tmp_path, project)
    container, _, _ = await run_site(engine, tag, project, network)
    other_tag, _, _ = await build_site(engine, base_image, tmp_path, other_project)
    other_container, _, _ = await run_site(engine, other_tag, other_project)
    # Same project label, but made by another panel instance (or by hand): not ours.
    foreign = docker_client.containers.create(
        base_image,
        ["sleep", "60"],
        name=unique("ghst-test-foreign"),
        labels={"ghst.project": project["ghst.project"], INSTANCE_LABEL: unique("other")},
    )
    try:
        with pytest.raises(NotFoundError):
            await engine.state(foreign.id)
        await engine.remove_container(foreign.id)  # not ours: left alone
        await engine.remove_labelled({"ghst.project": project["ghst.project"]})

        assert await engine.containers(project) == []
        assert await engine.images(project) == []
        assert await engine.networks(project) == []
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(tag)
        with pytest.raises(docker.errors.NotFound):
            docker_client.networks.get(network)

        assert [found.id for found in await engine.containers(other_project)] == [other_container]
        assert [tags for _, tags, _ in await engine.images(other_project)] == [(other_tag,)]
        foreign.reload()
        assert foreign.labels[INSTANCE_LABEL] != engine.instance
    finally:
        foreign.remove(force=True)


async def test_a_network_of_someone_else_is_a_conflict(
    engine: DockerEngine, docker_client: docker.DockerClient, project: dict[str, str]
) -> None:
    name = unique("ghst-test-net")
    foreign = docker_client.networks.create(name, driver="bridge")
    try:
        with pytest.raises(ConflictError, match="not made by this panel"):
            await engine.ensure_network(name, project)
        await engine.remove_network(name)  # not ours: left alone
        foreign.reload()
    finally:
        foreign.remove()
    await engine.remove_network(name)  # missing: fine


# ------------------------------------------------------------------------------------------------
# Docker down


async def test_docker_down_is_unavailable_with_a_clear_message(tmp_path: Path) -> None:
    engine = DockerEngine("unix:///nonexistent.sock", instance=unique("ghst-test"))
    try:
        with pytest.raises(UnavailableError, match=r"^Docker is not reachable right now\."):
            await engine.ping()
        with pytest.raises(UnavailableError):
            await engine.containers({})
        with pytest.raises(UnavailableError):
            await anext(engine.follow_logs(["anything"]))
        with pytest.raises(UnavailableError):
            await build(engine, write_context(tmp_path / "app", "FROM scratch\n"), {})
    finally:
        await engine.close()


async def test_build_arguments_and_a_target_stage_reach_the_builder(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    base_image: str,
    project: dict[str, str],
    tmp_path: Path,
) -> None:
    context = write_context(
        tmp_path / "staged",
        f"FROM {base_image} AS chosen\nARG GREETING=none\n"
        'RUN echo "chosen $GREETING" > /www/index.html\n'
        f"FROM {base_image} AS last\nRUN echo last > /www/index.html\n",
    )
    tag = f"ghst-test/{unique('staged')}:1"
    await engine.build(
        context,
        tag=tag,
        labels=project,
        on_log=lambda line: None,
        timeout=60,
        memory_bytes=BUILD_MEMORY,
        build_args={"GREETING": "hej"},
        target="chosen",
    )
    output = docker_client.containers.run(tag, ["cat", "/www/index.html"], remove=True)
    assert output == b"chosen hej\n"
