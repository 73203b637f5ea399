"""Benchmark stop and start through the deployments queue against calling Docker directly.

    .venv/bin/python bench/operations.py [--runs 10]

Stop, start and delete are jobs of the deployments queue: the dashboard's process (here a Panel
whose Docker engine is unreachable) queues one and waits until a worker (a second Panel on the
same database, with dockerd, running a DeploymentWorker in this process) reports it done. The
peer is what the dashboard did before: the deployer's own stop/start plus the project's flag,
called in the dashboard's process. Both act on the same running busybox httpd app (tests/
fixtures_deploy.py's `page_app`) behind the bench's own nginx, PostgreSQL and Redis on 127.0.0.1;
runs alternate between the two ways. Times are from the call to its return.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.deploy import bench_settings, import_base_image, remove_base_image  # noqa: E402
from bench.panel_process import bench_instance  # noqa: E402
from core.actor import Actor  # noqa: E402
from core.deploy.model import ACTIVE_STATES, State  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.routing.nginx import NginxProcess  # noqa: E402
from tests.actors import as_user  # noqa: E402
from tests.fixtures_deploy import app_tar, page_app  # noqa: E402
from tests.services import PostgresServer, RedisServer, temp_root  # noqa: E402

PROJECT = "ops"
NEEDS = (
    requirements.POSTGRES,
    requirements.REDIS,
    requirements.NGINX,
    requirements.DOCKER,
    requirements.BUSYBOX,
)


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def running(panel: Panel, actor: Actor, deployment_id: int) -> None:
    """Wait for the first deployment to go live (the worker builds it)."""
    for _ in range(1200):
        state = (await panel.deployments.get(actor, PROJECT, deployment_id)).state
        if state == State.RUNNING:
            return
        if state not in ACTIVE_STATES:
            raise RuntimeError(f"the bench's deployment ended {state}")
        await asyncio.sleep(0.05)
    raise RuntimeError("the bench's deployment did not go live within 60 s")


async def bench(runs: int) -> dict[str, list[float]]:
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = temp_root("ghst-bench-ops-")  # 0755: nginx's workers (nobody) reach its prefix
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    client = docker.from_env(timeout=120)
    instance = bench_instance()
    base_image = f"ghst-bench/busybox:{instance}"
    settings = bench_settings(work, postgres, redis, instance, "bench.localhost")
    times: dict[str, list[float]] = {"stop": [], "start": [], "stop_direct": [], "start_direct": []}
    worker_panel = dashboard = None
    nginx: NginxProcess | None = None
    stop_worker = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    try:
        postgres.start()
        redis.start()
        await asyncio.to_thread(import_base_image, client, base_image)
        worker_panel = await Panel.open(settings)
        nginx = NginxProcess(worker_panel.router)
        await nginx.start()
        worker_task = asyncio.create_task(worker_panel.worker().run(stop_worker))
        dashboard = await Panel.open(
            dataclasses.replace(settings, docker_url="tcp://127.0.0.1:9"),
            run_migrations=False,
        )
        user = await dashboard.accounts.sign_up("bench", "bench@example.com", "bench password 1")
        actor = as_user(user.id)
        await dashboard.projects.create(actor, PROJECT)
        upload = await dashboard.archives.begin_upload(actor, PROJECT, "app.tar")
        await upload.write(app_tar(page_app(base_image, "ops")))
        await upload.finish()
        queued = await dashboard.deployments.deploy(actor, PROJECT)
        await running(dashboard, actor, queued.id)
        project = await worker_panel.projects.get(actor, PROJECT)
        deployer = worker_panel.deployer

        async def stop_direct() -> None:
            status = await worker_panel.deployments.status(actor, PROJECT)  # type: ignore[union-attr]
            assert status.live is not None
            await deployer.stop(status.live)
            await worker_panel.projects.set_stopped(project.id, True)  # type: ignore[union-attr]

        async def start_direct() -> None:
            status = await worker_panel.deployments.status(actor, PROJECT)  # type: ignore[union-attr]
            assert status.live is not None
            await deployer.start(status.live)
            await worker_panel.projects.set_stopped(project.id, False)  # type: ignore[union-attr]

        for run in range(runs):
            times["stop"].append(await timed(lambda: dashboard.deployments.stop(actor, PROJECT)))  # type: ignore[union-attr]
            times["start"].append(await timed(lambda: dashboard.deployments.start(actor, PROJECT)))  # type: ignore[union-attr]
            times["stop_direct"].append(await timed(stop_direct))
            times["start_direct"].append(await timed(start_direct))
            print(f"run {run + 1}/{runs} done", file=sys.stderr, flush=True)
    finally:
        stop_worker.set()
        if worker_task is not None:
            await worker_task
        if worker_panel is not None:
            await worker_panel.engine.remove_labelled({})
        for panel in (dashboard, worker_panel):
            if panel is not None:
                await panel.close()
        if nginx is not None:
            await nginx.stop()
        await asyncio.to_thread(remove_base_image, client, base_image)
        redis.stop()
        postgres.stop()
    return times


def report(times: dict[str, list[float]], runs: int) -> str:
    def ms(values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        return f"{statistics.median(values) * 1000:.0f} ms (p90 {p90 * 1000:.0f} ms)"

    lines = [
        f"Stop and start of a running busybox app, {runs} alternating runs each",
        "",
        "| operation | queued: dashboard without Docker, worker acts | direct: Docker from the dashboard's process | ratio (medians) |",
        "|---|---|---|---|",
    ]
    for what in ("stop", "start"):
        queued, direct = times[what], times[f"{what}_direct"]
        ratio = statistics.median(queued) / statistics.median(direct)
        lines.append(f"| {what} | {ms(queued)} | {ms(direct)} | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    requirements.require("bench/operations.py", NEEDS)
    print(report(asyncio.run(bench(args.runs)), args.runs))


if __name__ == "__main__":
    main()
