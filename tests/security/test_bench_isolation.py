"""A bench run on a machine where a panel is live never touches that panel.

An operator with the live panel's settings exported in their shell runs a bench: its `ghst
serve` must still use a Docker instance of its own (a deployment worker sweeps the containers
of its instance that its database does not know), the bench's own database, and no deployment
worker where the bench deploys nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from bench import deploy, upload
from bench.panel_process import GhstProcess, bench_instance, panel_env
from core.panel import Panel
from core.runtime.engine import INSTANCE_LABEL
from core.settings import Settings
from tests.conftest import with_settings
from tests.security.first_run import REPO

BENCH_TIMEOUT = 300.0


def test_a_bench_panel_refuses_the_default_instance_and_inherits_no_setting(
    settings: Settings,
) -> None:
    live = {"GHST_NGINX_PREFIX": "/live/nginx", "GHST_INSTANCE": "ghst", "PATH": "/usr/bin"}
    with pytest.raises(ValueError, match="instance of its own"):
        panel_env(Settings(database_url=settings.database_url), live)
    with pytest.raises(ValueError, match="instance of its own"):
        GhstProcess({**live, "GHST_DATABASE_URL": settings.database_url})

    own = with_settings(settings, instance=bench_instance())
    env = panel_env(own, live)
    assert env["GHST_INSTANCE"] == own.instance != "ghst"
    assert env["GHST_DATABASE_URL"] == own.database_url
    assert "GHST_NGINX_PREFIX" not in env
    assert env["PATH"] == "/usr/bin"


def test_every_bench_starts_its_panel_through_the_isolating_helper(settings: Settings) -> None:
    # The benches that run `ghst serve` build its environment with panel_env().
    own = with_settings(settings, instance=bench_instance(), nginx_prefix="/tmp/x")
    assert upload.ghst_env(own, {})["GHST_INSTANCE"] == own.instance
    assert deploy.ghst_env(own)["GHST_INSTANCE"] == own.instance
    with pytest.raises(ValueError, match="instance of its own"):
        upload.ghst_env(settings, {})
    with pytest.raises(ValueError, match="instance of its own"):
        deploy.ghst_env(settings)
    assert "--no-worker" in GhstProcess(upload.ghst_env(own, {})).command
    assert "--no-worker" not in GhstProcess(deploy.ghst_env(own), worker=True).command
    # And nothing else in bench/ starts one its own way (`rclone serve sftp` is the upload peer).
    for path in sorted((REPO / "bench").glob("*.py")):
        if path.name != "panel_process.py":
            text = path.read_text()
            assert not re.search(r'"serve"(?!,\s*"sftp")', text), (
                f"{path.name} runs `ghst serve` itself"
            )


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {key: value for key, _, value in pairs}


def find_serve(root: int) -> tuple[list[str], dict[str, str]] | None:
    """(command line, environment) of a `ghst serve` started by process `root`, if one runs."""
    parents = _parents()
    for pid, parent in parents.items():
        chain = parent
        while chain > 1 and chain != root:
            chain = parents.get(chain, 0)
        if chain != root:
            continue
        try:
            command = _cmdline(pid)
            if len(command) > 1 and Path(command[1]).name == "ghst" and "serve" in command:
                return command, _environ(pid)
        except OSError:
            continue
    return None


@pytest.fixture
def live_instance(docker_client: docker.DockerClient) -> Iterator[str]:
    """The live panel's instance; whatever carries it is removed at the end."""
    instance = f"t{os.urandom(5).hex()}"
    yield instance
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
    ):
        container.remove(force=True)


async def test_a_bench_beside_a_live_panel_keeps_to_its_own_instance_database_and_no_worker(
    panel: Panel,
    settings: Settings,
    docker_client: docker.DockerClient,
    base_image: str,
    live_instance: str,
) -> None:
    # The live panel has an app container of a deployment only its own database knows.
    decoy = await asyncio.to_thread(
        docker_client.containers.create,
        base_image,
        command=["sleep", "600"],
        labels={INSTANCE_LABEL: live_instance, "ghst.deployment": "987654"},
    )
    env = {
        **os.environ,
        "GHST_DATABASE_URL": settings.database_url,
        "GHST_REDIS_URL": settings.redis_url,
        "GHST_INSTANCE": live_instance,
    }
    bench = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "sessions.py"),
        *("--runs", "1", "--sessions", "3", "--keys", "2", "--users", "1"),
        *("--bursts", "1", "--idle", "1", "--events", "1"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.ensure_future(bench.communicate())
    seen = None
    deadline = time.monotonic() + BENCH_TIMEOUT
    while seen is None and not output.done() and time.monotonic() < deadline:
        seen = await asyncio.to_thread(find_serve, bench.pid)
        await asyncio.sleep(0.02)
    text = (await asyncio.wait_for(output, BENCH_TIMEOUT))[0].decode(errors="replace")
    assert bench.returncode == 0, text
    assert seen is not None, f"the bench's `ghst serve` was never seen running:\n{text}"

    command, serve_env = seen
    assert "--no-worker" in command, command
    instance = serve_env.get("GHST_INSTANCE", "ghst (the default)")
    assert instance.startswith("bench-"), instance
    live_db, bench_db = urlsplit(settings.database_url), urlsplit(serve_env["GHST_DATABASE_URL"])
    assert (bench_db.hostname, bench_db.port) != (live_db.hostname, live_db.port)

    # The live panel lost nothing and gained nothing.
    await asyncio.to_thread(decoy.reload)
    assert decoy.labels[INSTANCE_LABEL] == live_instance
    assert await panel.accounts.find_by_username("bench000") is None
    left = await asyncio.to_thread(
        docker_client.containers.list, all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
    )
    assert left == []
