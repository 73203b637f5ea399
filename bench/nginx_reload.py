"""Benchmark switching a project in nginx with many vhosts, and print a markdown table.

    .venv/bin/python bench/nginx_reload.py [--runs 5] [--counts 10,100,1000]

What it does (everything on 127.0.0.1): starts a private nginx with `NginxProcess` in a temp
prefix on a free port, then for each vhost count N:

- fills vhosts/ with N projects (one file each, as `route()` writes them, but written directly
  and loaded with one reload: this part is set-up, not measured);
- `nginx -t`: `NginxRouter.validate()`, i.e. the `nginx -t -p prefix -c nginx.conf` subprocess
  the router runs before every reload;
- switch: `NginxRouter.route()` of an existing project to a new deployment id, from the call to
  its return: write the vhost atomically, `nginx -t`, HUP the master, wait until every old worker
  has stopped accepting and a probe through nginx carries the new `X-Ghst-Deployment`. This is
  the time after which the previous containers may be stopped;
- new project: the same for a project that had no vhost yet (first deploy).

Each figure is the median of `--runs` runs. Goal (issue 4): a switch with 1000 vhosts <= 200 ms.
nginx itself waits 100 ms after starting the new workers before it tells the old ones to stop
accepting, so no confirmed switch can take less than that. Other work on the machine shows
directly in these figures: the table says the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from core.routing.nginx import NginxProcess, NginxRouter, write_atomically  # noqa: E402
from tests.services import free_port, temp_root  # noqa: E402

TARGET = "bench-target"


def fill(router: NginxRouter, count: int) -> None:
    """Exactly `count` vhosts: the target plus filler projects, written directly."""
    wanted = {f"site-{number:05d}" for number in range(count - 1)}
    for path in router.vhosts_dir.glob("site-*.conf"):
        if path.stem not in wanted:
            path.unlink()
    for number, name in enumerate(sorted(wanted)):
        path = router.vhost_path(name)
        if not path.exists():
            write_atomically(path, router.render_vhost(name, 20000 + number % 9000, 1).encode())


def nginx_version() -> str:
    return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()


async def timed(action: Awaitable[object]) -> float:
    start = time.perf_counter()
    await action
    return (time.perf_counter() - start) * 1000


async def bench(args: argparse.Namespace) -> str:
    root = temp_root("ghst-bench-nginx-")
    router = NginxRouter(prefix=root / "nginx", domain="bench.localhost", port=free_port())
    process = NginxProcess(router)
    rows = []
    deployment = 1
    try:
        await process.start()
        await router.route(TARGET, 20000, deployment)
        for count in args.counts:
            await asyncio.to_thread(fill, router, count)
            deployment += 1
            await router.route(TARGET, 20001, deployment)  # loads the filler, confirmed
            assert len(router.projects()) == count, router.projects()
            validate = [await timed(router.validate()) for _ in range(args.runs)]
            switch = []
            for run in range(args.runs):
                deployment += 1
                switch.append(await timed(router.route(TARGET, 20002 + run % 2, deployment)))
            fresh = []
            for run in range(args.runs):
                name = f"fresh-{count}-{run}"
                fresh.append(await timed(router.route(name, 20000, 1)))
                await router.remove(name)
            rows.append((count, validate, switch, fresh))
        warnings = [
            line
            for line in (router.prefix / "logs" / "error.log").read_text().splitlines()
            if "[warn]" in line or "[emerg]" in line
        ]
    finally:
        await process.stop()
        shutil.rmtree(root, ignore_errors=True)

    version = await asyncio.to_thread(nginx_version)
    lines = [
        f"{version.removeprefix('nginx version: ')} on {platform.machine()},"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end;"
        f" median of {args.runs} (min-max)",
        "",
        "| vhosts | `nginx -t` | switch: write + validate + reload + confirm | new project live |",
        "|---:|---:|---:|---:|",
    ]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ms ({min(values):.0f}-{max(values):.0f})"

    for count, validate, switch, fresh in rows:
        lines.append(f"| {count} | {cell(validate)} | {cell(switch)} | {cell(fresh)} |")
    if warnings:
        lines += ["", "nginx warned:", *(f"    {line}" for line in warnings[:5])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--counts",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[10, 100, 1000],
    )
    args = parser.parse_args()
    requirements.require("bench/nginx_reload.py", (requirements.NGINX,))
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
