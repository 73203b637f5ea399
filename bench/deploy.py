"""Benchmark deployments (upload, build, run, nginx switch) and print a markdown table.

    .venv/bin/python bench/deploy.py [--runs 5] [--loops 4] [--counts 10,100,1000]
                                     [--wrk-seconds 5] [--wrk-connections 32]

What it does (everything on 127.0.0.1, with its own PostgreSQL and Redis from tests/services.py,
the machine's dockerd and nginx; nothing is pulled): imports a busybox base image (`docker
import` of tests/fixtures_docker.py's root filesystem), then runs `ghst serve` as a subprocess
(the real entry point) with its deployment worker and its own nginx (GHST_NGINX_MANAGED=1, a
private prefix and port, a unique GHST_INSTANCE, GHST_DOCKER_PULL=0, default drain of 2 s). The
bench process opens a Panel on the same database to queue deployments (`deployments.deploy`,
the call the dashboard's `d` key makes) and to read their state. Every app is
tests/fixtures_deploy.py's `page_app`: busybox httpd serving one page, behind a Dockerfile.

- deploy: from spawning OpenSSH's `scp app.tar bench@127.0.0.1:<project>/` into ghst's SSH
  server, through `deploy()` right after scp exits, to the first 200 through nginx (Host
  `<project>.<domain>:<port>`, polled every 10 ms on new connections) carrying the new page;
  each run on a fresh project;
- redeploy: a new version of a running project (uploaded beforehand), from `deploy()` to the
  first 200 carrying the new page; the next run waits for the drain (old containers removed);
- failed requests during redeploys: `--loops` threads request the page through nginx without
  pause during `--runs` redeploys (each followed by the drain, while the old containers are
  removed), once opening a new connection per request (like curl or a browser's new tabs) and
  once reusing keep-alive connections (http.client, reconnecting only when nginx closes them
  with `Connection: close`); any non-200 answer or connection error is a failure;
- nginx switch with N vhosts: bench/nginx_reload.py's measure on a separate private nginx
  (write the vhost, `nginx -t`, reload, confirm through nginx), median of `--runs`;
- requests/s: `wrk` (Debian package `wrk`; a small Python load generator when it is missing)
  against the running project through nginx, then straight at the container's published port.
  The container has the panel's default plan limits (0.5 CPU), like any deployed app.

The breakdown printed under the table comes from polling the deployment's state every 20 ms
(queued -> building -> starting -> running) and the "The app answers (x s)" line of its build log.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import http.client
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.nginx_reload import fill, nginx_version, timed  # noqa: E402
from bench.panel_process import GhstProcess, bench_instance, panel_env  # noqa: E402
from bench.upload import OPENSSH_OPTIONS  # noqa: E402
from core.deploy.service import Deployment  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.routing.nginx import NginxProcess, NginxRouter  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.actors import acting, as_user  # noqa: E402
from tests.fixtures_deploy import app_tar, page_app  # noqa: E402
from tests.fixtures_docker import busybox_rootfs  # noqa: E402
from tests.fixtures_nginx import http_request  # noqa: E402
from tests.services import PostgresServer, RedisServer, free_port, temp_root  # noqa: E402

USERNAME = "bench"
DOMAIN = "bench.localhost"
STEADY = "steady"
FINISHED = ("running", "failed", "cancelled", "superseded")
DEPLOY_TIMEOUT = 60.0
POLL_HTTP = 0.01
POLL_STATE = 0.02

NEEDS = (
    requirements.SCP,
    requirements.POSTGRES,
    requirements.REDIS,
    requirements.NGINX,
    requirements.DOCKER,
    requirements.BUSYBOX,
)

GOAL_DEPLOY_S = 3.0
GOAL_REDEPLOY_S = 3.0
GOAL_FAILED = 0
GOAL_SWITCH_MS = 200.0
GOAL_SWITCH_VHOSTS = 1000


# --- timing one deployment ------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds from the deploy() call (negative: before it, e.g. the upload)."""

    total: float = 0.0  # from the start of the measure to the first 200 with the new page
    upload: float = 0.0  # scp, for first deploys
    seen: dict[str, float] = field(default_factory=dict)  # state -> first seen
    first_200: float = 0.0
    health: float | None = None  # from the build log: "The app answers (x s)"
    deployment: Deployment | None = None


class Bench:
    def __init__(self, panel: Panel, user_id: int) -> None:
        self.panel = panel
        self.user_id = user_id

    async def deploy_and_wait(self, project: str, page: str) -> Timing:
        """deploy() the newest version of `project`; wait for `page` through nginx."""
        timing = Timing()
        queued_at = time.perf_counter()
        deployment = await self.panel.deployments.deploy(as_user(self.user_id), project)
        watcher = asyncio.create_task(self._watch_states(project, deployment, queued_at, timing))
        try:
            timing.first_200 = await self._wait_for_page(project, page, queued_at, watcher)
            timing.deployment = await asyncio.wait_for(watcher, DEPLOY_TIMEOUT)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        log = ""
        for _ in range(50):  # the worker writes the log's last lines a moment later
            log, _ = await self.panel.deployments.build_log(
                as_user(self.user_id), project, deployment.id
            )
            if "Live at" in log or timing.deployment.state != "running":
                break
            await asyncio.sleep(0.1)
        found = re.search(r"The app answers \(([\d.]+) s\)", log)
        timing.health = float(found.group(1)) if found else None
        if timing.deployment.state != "running":
            raise RuntimeError(f"deployment #{deployment.id} {timing.deployment.state}:\n{log}")
        return timing

    async def _watch_states(
        self, project: str, deployment: Deployment, since: float, timing: Timing
    ) -> Deployment:
        while True:
            current = await self.panel.deployments.get(
                as_user(self.user_id), project, deployment.id
            )
            timing.seen.setdefault(current.state, time.perf_counter() - since)
            if current.state in FINISHED:
                return current
            await asyncio.sleep(POLL_STATE)

    async def _wait_for_page(
        self, project: str, page: str, since: float, watcher: asyncio.Task[Deployment]
    ) -> float:
        deadline = since + DEPLOY_TIMEOUT
        while time.perf_counter() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                answer = await http_request(self.panel.router, project)
                if answer.status == 200 and answer.text.strip() == page:
                    return time.perf_counter() - since
            if watcher.done() and watcher.result().state != "running":
                raise RuntimeError(f"{project}: deployment {watcher.result().state}")
            await asyncio.sleep(POLL_HTTP)
        raise TimeoutError(f"{project} never answered {page!r} through nginx")

    async def upload(self, project: str, files: dict[str, str]) -> None:
        transfer = await self.panel.archives.begin_upload(acting(self.user_id), project, "app.tar")
        await transfer.write(app_tar(files))
        await transfer.finish()


# --- load during redeploys ------------------------------------------------------------------


@dataclass
class Load:
    """Threads requesting one page through nginx until stopped, counting what failed.

    With keep-alive, a request that fails on a connection which already served one (nginx
    closed it as the client reused it) is a failure, and is also sent again once on a new
    connection, as browsers and HTTP libraries do for idempotent requests (RFC 9112, 9.3.1):
    `failed_after_retry` counts what still fails then.
    """

    port: int
    host: str
    keep_alive: bool
    loops: int
    stop: threading.Event = field(default_factory=threading.Event)
    total: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    failed_after_retry: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.loops):
            thread = threading.Thread(target=self._loop, daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _loop(self) -> None:
        connection: http.client.HTTPConnection | None = None
        reused = False
        while not self.stop.is_set():
            if connection is None or not self.keep_alive:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                reused = False
            failure, keep = self._request(connection)
            retried_failure = failure
            if failure is not None and reused and not failure.startswith("HTTP"):
                fresh = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                retried_failure, _ = self._request(fresh)
                fresh.close()
            if keep and self.keep_alive:
                reused = True
            else:
                connection.close()
                connection = None
            with self.lock:
                self.total += 1
                if failure is not None:
                    self.failures[failure] += 1
                if retried_failure is not None:
                    self.failed_after_retry += 1
        if connection is not None:
            connection.close()

    def _request(self, connection: http.client.HTTPConnection) -> tuple[str | None, bool]:
        """(what failed or None, whether the connection may serve another request)."""
        try:
            connection.request("GET", "/", headers={"Host": self.host})
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__, False
        failure = None if response.status == 200 else f"HTTP {response.status}"
        return failure, not response.will_close


# --- requests per second --------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    requests_per_s: float
    errors: dict[str, int]  # kind -> count (non-2xx, socket timeouts...)
    tool: str


def wrk_throughput(url: str, host: str | None, seconds: int, connections: int) -> Throughput:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s"]
    if host:
        command += ["-H", f"Host: {host}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    errors: dict[str, int] = {}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors["non-2xx"] = int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        kinds = ("connect", "read", "write", "timeout")
        for kind, count in zip(kinds, socket_errors.groups(), strict=True):
            if int(count):
                errors[kind] = int(count)
    return Throughput(float(rate.group(1)), errors, "wrk")


def python_throughput(port: int, host: str, seconds: int, connections: int) -> Throughput:
    """Fallback without wrk: keep-alive http.client threads (far slower than wrk)."""
    load = Load(port, host, keep_alive=True, loops=connections)
    started = time.perf_counter()
    load.start()
    time.sleep(seconds)
    load.finish()
    elapsed = time.perf_counter() - started
    return Throughput(load.total / elapsed, dict(load.failures), "python")


def throughput(port: int, host: str | None, seconds: int, connections: int) -> Throughput:
    if shutil.which("wrk"):
        return wrk_throughput(f"http://127.0.0.1:{port}/", host, seconds, connections)
    return python_throughput(port, host or f"127.0.0.1:{port}", seconds, connections)


# --- nginx switch with many vhosts (bench/nginx_reload.py's measure) ------------------------


async def switch_times(counts: list[int], runs: int) -> list[tuple[int, list[float], list[float]]]:
    """For each vhost count: (count, `nginx -t` ms, switch ms) on a private nginx."""
    root = temp_root("ghst-bench-deploy-nginx-")
    router = NginxRouter(prefix=root / "nginx", domain="reload.localhost", port=free_port())
    process = NginxProcess(router)
    rows = []
    deployment = 1
    try:
        await process.start()
        await router.route("bench-target", 20000, deployment)
        for count in counts:
            await asyncio.to_thread(fill, router, count)
            deployment += 1
            await router.route("bench-target", 20001, deployment)
            validate = [await timed(router.validate()) for _ in range(runs)]
            switch = []
            for run in range(runs):
                deployment += 1
                switch.append(
                    await timed(router.route("bench-target", 20002 + run % 2, deployment))
                )
            rows.append((count, validate, switch))
    finally:
        await process.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


# --- the run --------------------------------------------------------------------------------


def ghst_env(settings: Settings) -> dict[str, str]:
    return panel_env(
        settings,
        dict(os.environ),
        GHST_BCRYPT_ROUNDS=str(settings.bcrypt_rounds),
        GHST_DOCKER_PULL="0",
        GHST_PORT_MIN=str(settings.port_min),
        GHST_PORT_MAX=str(settings.port_max),
        GHST_HEALTH_TIMEOUT=str(settings.health_timeout),
        GHST_DOMAIN=settings.domain,
        GHST_NGINX_MANAGED="1",
        GHST_NGINX_PREFIX=settings.nginx_prefix,
        GHST_NGINX_PORT=str(settings.nginx_port),
    )


async def scp(port: int, identity: Path, source: Path, project: str) -> float:
    """Seconds from spawning OpenSSH's scp to its exit (status 0 required)."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "/usr/bin/scp",
        *OPENSSH_OPTIONS,
        *("-i", str(identity), "-P", str(port)),
        str(source),
        f"{USERNAME}@127.0.0.1:{project}/",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode != 0:
        raise RuntimeError(f"scp exited {process.returncode}: {(out + err).decode()}")
    return time.perf_counter() - started


@dataclass
class Results:
    deploys: list[Timing] = field(default_factory=list)
    redeploys: list[Timing] = field(default_factory=list)
    loads: list[tuple[str, Load, list[Timing]]] = field(default_factory=list)
    switches: list[tuple[int, list[float], list[float]]] = field(default_factory=list)
    through_nginx: Throughput | None = None
    direct: Throughput | None = None
    versions: dict[str, str] = field(default_factory=dict)


def import_base_image(client: docker.DockerClient, reference: str) -> None:
    repository, tag = reference.split(":")
    client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag)


def remove_base_image(client: docker.DockerClient, reference: str) -> None:
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(reference, force=True)


def kill_nginx(prefix: Path) -> None:
    """If `ghst serve` died without stopping its nginx: stop that master by its pid file."""
    pid_file = prefix / "nginx.pid"
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGQUIT)
        time.sleep(1)


def bench_settings(
    work: Path, postgres: PostgresServer, redis: RedisServer, instance: str, domain: str
) -> Settings:
    """A deploying panel of the bench's own: its services, instance, ports and nginx prefix."""
    low = 20000 + (uuid.uuid4().int % 90) * 100
    return Settings(
        data_dir=work / "data",
        database_url=postgres.dsn(),
        redis_url=redis.url(),
        bcrypt_rounds=4,
        instance=instance,
        docker_pull=False,
        port_min=low,
        port_max=low + 99,
        health_timeout=30.0,
        domain=domain,
        nginx_prefix=str(work / "nginx"),
        nginx_port=free_port(),
    )


async def bench(args: argparse.Namespace) -> Results:
    results = Results()
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = temp_root("ghst-bench-deploy-")  # 0755: nginx's workers (nobody) reach its prefix
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    client = docker.from_env(timeout=120)
    instance = bench_instance()
    base_image = f"ghst-bench/busybox:{instance}"
    settings = bench_settings(work, postgres, redis, instance, DOMAIN)
    panel: Panel | None = None
    ghst: GhstProcess | None = None
    loads: list[Load] = []
    try:
        postgres.start()
        redis.start()
        await asyncio.to_thread(import_base_image, client, base_image)
        panel = await Panel.open(settings)  # migrates
        key = asyncssh.generate_private_key("ssh-ed25519")
        identity = work / "id_ed25519"
        identity.write_bytes(bytes(key.export_private_key("openssh")))
        identity.chmod(0o600)
        public = bytes(key.export_public_key("openssh")).decode().strip()
        user = await panel.accounts.sign_up(USERNAME, "bench@example.com", "bench password 1")
        await panel.keys.add(acting(user.id), public + " bench", "bench")
        runner = Bench(panel, user.id)

        ghst = GhstProcess(ghst_env(settings), worker=True)  # the bench deploys
        await ghst.start()
        host = panel.router.host(STEADY) + f":{settings.nginx_port}"

        # 1. upload with scp, deploy, first 200 through nginx; a fresh project each run.
        for run in range(args.runs):
            project = f"first-{run + 1}"
            page = f"{project} deployed by the bench"
            await panel.projects.create(acting(user.id), project)
            archive = work / f"{project}.tar"
            archive.write_bytes(app_tar(page_app(base_image, page)))
            started = time.perf_counter()
            uploaded = await scp(ghst.port, identity, archive, project)
            timing = await runner.deploy_and_wait(project, page)
            timing.total = time.perf_counter() - started
            timing.upload = uploaded
            results.deploys.append(timing)
            progress("deploy", run, timing)

        # 2. redeploys of a running project.
        await panel.projects.create(acting(user.id), STEADY)
        version = 0

        async def redeploy() -> Timing:
            nonlocal version
            version += 1
            page = f"{STEADY} version {version}"
            await runner.upload(STEADY, page_app(base_image, page))
            timing = await runner.deploy_and_wait(STEADY, page)
            timing.total = timing.first_200
            # The old version drains, then its containers go (while the loads still run).
            await asyncio.sleep(settings.drain_seconds + 0.5)
            return timing

        await redeploy()  # the first version
        for run in range(args.runs):
            timing = await redeploy()
            results.redeploys.append(timing)
            progress("redeploy", run, timing)

        # 3. requests through nginx during redeploys.
        for keep_alive in (False, True):
            load = Load(settings.nginx_port, host, keep_alive, args.loops)
            loads.append(load)
            load.start()
            await asyncio.sleep(0.5)
            timings = []
            for run in range(args.runs):
                timing = await redeploy()
                timings.append(timing)
                progress("under load", run, timing)
            await asyncio.to_thread(load.finish)
            kind = "keep-alive connections" if keep_alive else "a new connection per request"
            results.loads.append((kind, load, timings))
            print(
                f"load ({kind}): {load.total} requests, failures {dict(load.failures)}",
                file=sys.stderr,
                flush=True,
            )

        # 5. requests/s through nginx and straight at the container.
        status = await panel.deployments.status(as_user(user.id), STEADY)
        assert status.live is not None and status.live.port is not None
        results.through_nginx = await asyncio.to_thread(
            throughput, settings.nginx_port, host, args.wrk_seconds, args.wrk_connections
        )
        results.direct = await asyncio.to_thread(
            throughput, status.live.port, None, args.wrk_seconds, args.wrk_connections
        )

        # 4. nginx switch with many vhosts, on a private nginx of its own.
        results.switches = await switch_times(args.counts, args.runs)

        results.versions = {
            "docker": str(client.version().get("Version", "?")),
            "nginx": nginx_version().removeprefix("nginx version: "),
        }
    finally:
        for load in loads:
            load.finish()
        if ghst is not None:
            with contextlib.suppress(Exception):
                await ghst.stop()
            if ghst.process is not None and ghst.process.returncode is None:
                ghst.process.kill()
                await ghst.process.wait()
        kill_nginx(settings.nginx_dir)
        if panel is not None:
            with contextlib.suppress(Exception):
                await panel.engine.remove_labelled({})
            with contextlib.suppress(Exception):
                await panel.close()
        await asyncio.to_thread(remove_base_image, client, base_image)
        client.close()
        for stop in (redis.stop, postgres.stop):
            with contextlib.suppress(Exception):
                stop()
        for path in (pg_root, redis_root, work):
            shutil.rmtree(path, ignore_errors=True)
    return results


def progress(what: str, run: int, timing: Timing) -> None:
    states = ", ".join(f"{state} {at:.2f}" for state, at in timing.seen.items())
    print(
        f"{what} {run + 1}: {timing.total:.2f} s (upload {timing.upload:.2f} s; first 200"
        f" {timing.first_200:.2f} s after deploy(); {states}; health {timing.health} s)",
        file=sys.stderr,
        flush=True,
    )


# --- the table ------------------------------------------------------------------------------


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def millis(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms ({min(values):.0f}-{max(values):.0f})"


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def breakdown(timings: list[Timing]) -> str:
    """Median seconds of each phase, from deploy() on."""

    def phase(
        start: Callable[[Timing], float | None], end: Callable[[Timing], float | None]
    ) -> str:
        values = []
        for timing in timings:
            a, b = start(timing), end(timing)
            if a is not None and b is not None:
                values.append(b - a)
        return f"{statistics.median(values):.2f}" if values else "?"

    def seen(state: str) -> Callable[[Timing], float | None]:
        return lambda timing: timing.seen.get(state)

    def zero(timing: Timing) -> float:
        return 0.0

    def first_200(timing: Timing) -> float:
        return timing.first_200

    healths = [t.health for t in timings if t.health is not None]
    health = f"{statistics.median(healths):.1f}" if healths else "?"
    return (
        f"queued->claimed {phase(zero, seen('building'))} s, "
        f"unpack+build {phase(seen('building'), seen('starting'))} s, "
        f"start+health+nginx switch {phase(seen('starting'), first_200)} s "
        f"(health wait {health} s)"
    )


def report(args: argparse.Namespace, results: Results) -> str:
    deploy = [t.total for t in results.deploys]
    redeploy = [t.total for t in results.redeploys]
    upload = [t.upload for t in results.deploys]
    versions = results.versions
    lines = [
        f"ghst deployments, {platform.machine()}, {os.cpu_count()} cores, Linux "
        f"{platform.release()}, Docker {versions.get('docker', '?')}, "
        f"{versions.get('nginx', '?')}; median (min-max)",
        "",
        "| Measure | Goal | Result | |",
        "|---|---|---|---|",
        f"| Deploy: `scp` start to first 200 through nginx, new project (of {len(deploy)}) "
        f"| ≤ {GOAL_DEPLOY_S:.0f} s | {seconds(deploy)} | {mark(statistics.median(deploy) <= GOAL_DEPLOY_S)} |",
        f"| of which `scp` of the archive | | {seconds(upload)} | |",
        f"| Redeploy: `deploy()` to first 200 with the new page (of {len(redeploy)}) "
        f"| ≤ {GOAL_REDEPLOY_S:.0f} s | {seconds(redeploy)} "
        f"| {mark(statistics.median(redeploy) <= GOAL_REDEPLOY_S)} |",
    ]
    for kind, load, timings in results.loads:
        failed = sum(load.failures.values())
        detail = ""
        if failed:
            kinds = ", ".join(f"{n} {why}" for why, n in load.failures.items())
            detail = f" ({kinds}"
            if load.keep_alive:
                detail += f"; {load.failed_after_retry} after one retry on a new connection"
            detail += ")"
        lines.append(
            f"| Failed requests during {len(timings)} redeploys + drains, {load.loops} loops, "
            f"{kind} | {GOAL_FAILED} | {failed} of {load.total}{detail} "
            f"| {mark(failed <= GOAL_FAILED)} |"
        )
    for count, validate, switch in results.switches:
        goal = f"≤ {GOAL_SWITCH_MS:.0f} ms" if count == GOAL_SWITCH_VHOSTS else ""
        ok = mark(statistics.median(switch) <= GOAL_SWITCH_MS) if goal else ""
        lines.append(
            f"| nginx switch (write + `nginx -t` + reload + confirm), {count} vhosts "
            f"| {goal} | {millis(switch)}; `nginx -t` alone {millis(validate)} | {ok} |"
        )
    nginx, direct = results.through_nginx, results.direct
    if nginx is not None and direct is not None:
        setup = (
            f"`wrk -t2 -c{args.wrk_connections} -d{args.wrk_seconds}s`"
            if nginx.tool == "wrk"
            else f"Python, {args.wrk_connections} keep-alive threads, {args.wrk_seconds} s"
            " (wrk not installed)"
        )

        def errors(result: Throughput) -> str:
            if not result.errors:
                return ""
            return " (" + ", ".join(f"{n} {kind}" for kind, n in result.errors.items()) + ")"

        lines.append(
            f"| Requests/s through nginx vs straight at the container, {setup} "
            f"| (reference) | {nginx.requests_per_s:,.0f}{errors(nginx)} vs "
            f"{direct.requests_per_s:,.0f}{errors(direct)} "
            f"({nginx.requests_per_s / direct.requests_per_s:.2f}x) | |"
        )
    lines += [
        "",
        f"Deploy, from deploy(): {breakdown(results.deploys)}.",
        f"Redeploy: {breakdown(results.redeploys)}.",
    ]
    under_load = [t.total for _, _, timings in results.loads for t in timings]
    if under_load:
        lines.append(f"Redeploy while the loops ran: {seconds(under_load)}.")
    return "\n".join(lines)


async def until_signalled(args: argparse.Namespace) -> Results:
    """The bench, cancelled (so that its clean-up runs) by the first SIGINT or SIGTERM.

    Only this task is cancelled, once: the tasks its clean-up waits on (the `ghst serve`
    subprocess's output reader...) keep running, and a second Ctrl-C does not cut it short.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if not task.cancelling():
            print("interrupted: cleaning up", file=sys.stderr, flush=True)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    try:
        return await bench(args)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="deploys, redeploys... (default 5)")
    parser.add_argument(
        "--loops", type=int, default=4, help="client loops during redeploys (default 4)"
    )
    parser.add_argument(
        "--counts",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[10, 100, 1000],
        help="vhost counts for the nginx switch (default 10,100,1000)",
    )
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--wrk-connections", type=int, default=32)
    args = parser.parse_args()
    requirements.require("bench/deploy.py", NEEDS)
    if not shutil.which("wrk"):
        print("wrk is not installed: requests/s come from a slower Python client", file=sys.stderr)
    try:
        results = asyncio.run(until_signalled(args))
    except asyncio.CancelledError:
        sys.exit(130)
    print(report(args, results))


if __name__ == "__main__":
    main()
