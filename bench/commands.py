"""Benchmark the commands over SSH against OpenSSH and scp, and print a markdown table.

    .venv/bin/python bench/commands.py [--runs 20] [--projects 1000] [--upload-mib 100]

What it does (everything on 127.0.0.1, with its own PostgreSQL and Redis from tests/services.py):

- runs `ghst serve --no-worker` as a subprocess (bench/panel_process.py: an instance of its
  own), with one account holding an ed25519 key and `--projects` projects (written straight
  into the table: an account may create 100, the bench wants more);
- `ssh host whoami` against OpenSSH's sshd running `true` (bench/sessions.py's baseline, as a
  user whose shell is /bin/sh), the same client, key and key exchange (curve25519-sha256): wall
  time from spawning `ssh` to its exit, median of `--runs`, the two taking turns;
- `ssh host projects list --json` with those projects: the same wall time (the JSON is parsed
  and counted, so a short answer fails the bench);
- `ssh host upload p < archive` against `scp archive host:p/` into the same panel, for one
  archive of `--upload-mib` MiB (a tar with a Dockerfile and random bytes): MiB/s from spawn to
  exit, median of 3 runs each, taking turns; each stored version is deleted after its run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import asyncssh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.panel_process import bench_instance  # noqa: E402
from bench.sessions import (  # noqa: E402
    FAIR_KEX,
    OpenSSHServer,
    baseline_login,
    remove_baseline_user,
    serve,
    ssh_command,
    time_ssh_command,
)
from bench.upload import make_archive  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.actors import as_user  # noqa: E402
from tests.services import PostgresServer, RedisServer, temp_root  # noqa: E402

SSH = requirements.SSH.program
SCP = requirements.SCP.program
NEEDS = (
    requirements.SSH,
    requirements.SCP,
    requirements.SSH_KEYGEN,
    requirements.SSHD,
    requirements.POSTGRES,
    requirements.REDIS,
)
GOAL_WHOAMI_RATIO = 1.2
GOAL_LIST_MS = 150
GOAL_UPLOAD_RATIO = 0.9
UPLOAD_RUNS = 3
USER = "bench"
PROJECT = "bench-upload"


async def prepare(panel: Panel, settings: Settings, projects: int) -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = bytes(key.export_public_key("openssh")).decode().strip()
    user = await panel.accounts.sign_up(USER, f"{USER}@example.com", "bench pw 1234")
    await panel.keys.add(as_user(user.id), public + " bench", "bench")
    await panel.projects.create(as_user(user.id), PROJECT)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE users SET storage_quota_bytes = $1 WHERE id = $2", 100 << 30, user.id
        )
        await conn.executemany(
            "INSERT INTO projects (user_id, name) VALUES ($1, $2)",
            [(user.id, f"p{index:04d}") for index in range(projects - 1)],
        )
    finally:
        await conn.close()
    await panel.projects.invalidate(user.id)
    return key, public


async def timed(command: list[str], stdin: Path | None = None) -> tuple[float, bytes]:
    """Wall time from spawn to exit (status 0 required), and stdout."""
    source = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command, stdin=source, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        elapsed = time.perf_counter() - started
    finally:
        if stdin is not None:
            source.close()  # type: ignore[union-attr]
    if process.returncode != 0:
        raise RuntimeError(f"{command[-1]} exited {process.returncode}: {err.decode()}")
    return elapsed, out


async def remove_versions(panel: Panel, user_id: int) -> None:
    for archive in await panel.archives.list(as_user(user_id), PROJECT):
        await panel.archives.delete(as_user(user_id), PROJECT, archive.name)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


async def bench(args: argparse.Namespace) -> str:
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = Path(tempfile.mkdtemp(prefix="ghst-bench-cmds-"))
    os.chmod(work, 0o755)  # the baseline login user must reach authorized_keys
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    postgres.start()
    redis.start()
    ghst = None
    sshd: OpenSSHServer | None = None
    panel: Panel | None = None
    try:
        settings = Settings(
            data_dir=work / "data",
            database_url=postgres.dsn(),
            redis_url=redis.url(),
            bcrypt_rounds=4,
            instance=bench_instance(),
        )
        panel = await Panel.open(settings)  # migrates
        key, public = await prepare(panel, settings, args.projects)
        user = await panel.accounts.find_by_username(USER)
        assert user is not None
        identity = work / "id_ed25519"
        identity.write_bytes(bytes(key.export_private_key("openssh")))
        identity.chmod(0o600)
        ghst = await serve(settings, 1)
        sshd = OpenSSHServer(work, public)
        sshd.start()
        login = baseline_login(work)

        whoami: list[float] = []
        true: list[float] = []
        listing: list[float] = []
        for _ in range(2):  # warm both servers (imports, caches) untimed
            await time_ssh_command(ghst.port, identity, USER, "whoami")
            await time_ssh_command(sshd.port, identity, login, "true")
        for _ in range(args.runs):
            whoami.append(await time_ssh_command(ghst.port, identity, USER, "whoami"))
            true.append(await time_ssh_command(sshd.port, identity, login, "true"))
            seconds, out = await timed(
                [*ssh_command(ghst.port, identity, USER, "-T"), "--", "projects", "list", "--json"]
            )
            if len(json.loads(out)) != args.projects:
                raise RuntimeError("projects list --json did not list every project")
            listing.append(seconds)

        archive = work / "app.tar"
        size = make_archive(archive, args.upload_mib)
        stdin_rates: list[float] = []
        scp_rates: list[float] = []
        upload = [*ssh_command(ghst.port, identity, USER, "-T"), "--", "upload", PROJECT]
        scp = [
            SCP,
            *("-F", "/dev/null", "-o", "StrictHostKeyChecking=no"),
            *("-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"),
            *("-o", "IdentitiesOnly=yes", *FAIR_KEX, "-i", str(identity), "-P", str(ghst.port)),
            str(archive),
            f"{USER}@127.0.0.1:{PROJECT}/",
        ]
        for _ in range(UPLOAD_RUNS):
            seconds, _ = await timed(upload, stdin=archive)
            stdin_rates.append(size / seconds / (1 << 20))
            await remove_versions(panel, user.id)
            seconds, _ = await timed(scp)
            scp_rates.append(size / seconds / (1 << 20))
            await remove_versions(panel, user.id)
    finally:
        if ghst is not None:
            await ghst.stop()
        if sshd is not None:
            sshd.stop()
        remove_baseline_user()
        if panel is not None:
            await panel.close()
        postgres.stop()
        redis.stop()

    whoami_ms, true_ms = statistics.median(whoami), statistics.median(true)
    list_ms = statistics.median(listing)
    stdin_rate, scp_rate = statistics.median(stdin_rates), statistics.median(scp_rates)
    rows = [
        "| Command | ghst | Peer | Result | Goal | |",
        "|---|---|---|---|---|---|",
        f"| `ssh host whoami` vs `ssh host true` (OpenSSH sshd) | {ms(whoami_ms)} | {ms(true_ms)}"
        f" | {whoami_ms / true_ms:.2f}x | ≤ {GOAL_WHOAMI_RATIO}x |"
        f" {mark(whoami_ms / true_ms <= GOAL_WHOAMI_RATIO)} |",
        f"| `ssh host projects list --json`, {args.projects} projects | {ms(list_ms)} | |"
        f" {ms(list_ms)} | ≤ {GOAL_LIST_MS} ms | {mark(list_ms * 1000 <= GOAL_LIST_MS)} |",
        f"| `upload p < app.tar` vs `scp app.tar host:p/`, {args.upload_mib} MiB"
        f" | {stdin_rate:.0f} MiB/s | {scp_rate:.0f} MiB/s | {stdin_rate / scp_rate:.2f}x"
        f" | ≥ {GOAL_UPLOAD_RATIO}x | {mark(stdin_rate / scp_rate >= GOAL_UPLOAD_RATIO)} |",
    ]
    notes = [
        "",
        f"Medians: {args.runs} runs of each command, {UPLOAD_RUNS} uploads each way;"
        f" {args.ssh_version}; {os.cpu_count()} CPUs.",
    ]
    return "\n".join(rows + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="commands timed (default 20)")
    parser.add_argument("--projects", type=int, default=1000, help="projects listed (1000)")
    parser.add_argument("--upload-mib", type=int, default=100, help="archive size (100 MiB)")
    args = parser.parse_args()
    requirements.require("bench/commands.py", NEEDS)
    args.ssh_version = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
