"""Idle dashboards and events: what N open, untouched dashboards cost PostgreSQL, and how long a
deployment's state change takes to reach every screen that watches it. Prints a markdown table.

    .venv/bin/python bench/events.py [--sessions 20,100] [--idle 20] [--rounds 5]
    BENCH_CODE=/path/to/other/checkout .venv/bin/python bench/events.py   # the same, other code

What it does (everything on 127.0.0.1, with its own PostgreSQL and Redis from tests/services.py):

- runs `ghst serve --no-worker` as a subprocess (the real entry point, bench/panel_process.py)
  with a user, an ed25519 key and a project with one deployment that is building;
- opens N asyncssh sessions with a PTY (100x30): half go to the projects list, half open the
  project (home, `j`, enter), each waiting until its screen is drawn;
- idle: with nobody typing, the database's committed transactions per second
  (`pg_stat_database.xact_commit` over `--idle` seconds, less the bench's own reads) and the
  server's CPU (utime + stime from /proc) over the same time;
- event to screen: the deployment's state is changed from another connection (as a worker on
  another host would), alternating building and failed; for every project-screen session,
  from the commit to the first output chunk that carries the new state's word; p50, p99, max
  over `--rounds` rounds.

`--profile DIR` runs the server under cProfile (bench/profiled_serve.py, CPU clock) and writes
DIR/idle-N.prof and DIR/events-N.prof for each N: where the idle and the event phases' CPU goes
(`python -m pstats`). The profiler slows the server: its table is not comparable.

`BENCH_CODE` runs the bench and the server with another checkout's code (e.g. the main branch,
to compare before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import asyncssh
import pyte

ROOT = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.panel_process import GhstProcess, bench_instance, panel_env  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.actors import as_user  # noqa: E402
from tests.services import PostgresServer, RedisServer, temp_root  # noqa: E402

USERNAME = "bench"
PROJECT = "shop"
WIDTH, HEIGHT = 100, 30
TIMEOUT = 60.0
KEY_RETRY = 5.0
OPEN_AT_ONCE = 10  # sessions opened in parallel (a burst of logins is another bench)
NEEDS = (requirements.POSTGRES, requirements.REDIS)
# The state set, and a word the project screen's status line then shows.
STATES = (("building", b"deploying"), ("failed", b"failed"))


class Session:
    """One dashboard over asyncssh: a pyte screen while navigating, raw chunks after."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(WIDTH, HEIGHT)
        self.stream = pyte.ByteStream(self.screen)
        self.parsing = True
        self.changed = asyncio.Event()
        self.watch_for: bytes | None = None
        self.seen_at: float | None = None
        self.seen = asyncio.Event()
        self.conn: asyncssh.SSHClientConnection | None = None
        self.process: asyncssh.SSHClientProcess[bytes] | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, port: int, key: asyncssh.SSHKey) -> None:
        self.conn = await asyncssh.connect(
            "127.0.0.1",
            port,
            username=USERNAME,
            client_keys=[key],
            known_hosts=None,
            agent_path=None,
        )
        self.process = await self.conn.create_process(
            term_type="xterm-256color", term_size=(WIDTH, HEIGHT), encoding=None
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None
        while data := await self.process.stdout.read(65536):
            if self.watch_for is not None and self.seen_at is None and self.watch_for in data:
                self.seen_at = time.perf_counter()
                self.seen.set()
            if self.parsing:
                self.stream.feed(data)
            self.changed.set()

    def text(self) -> str:
        return "\n".join(self.screen.display)

    async def wait_text(self, text: str, seconds: float = TIMEOUT) -> None:
        async with asyncio.timeout(seconds):
            while text not in self.text():
                self.changed.clear()
                await self.changed.wait()

    def send(self, keys: str) -> None:
        assert self.process is not None
        self.process.stdin.write(keys.encode())

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()
        if self.reader is not None:
            self.reader.cancel()

    async def press(self, keys: str, then: str) -> None:
        """Send `keys` until `then` shows (a key sent while a screen mounts may be dropped)."""
        for _ in range(int(TIMEOUT / KEY_RETRY)):
            self.send(keys)
            with contextlib.suppress(TimeoutError):
                await self.wait_text(then, KEY_RETRY)
                return
        raise TimeoutError(f"{then!r} never showed after {keys!r}; the screen:\n{self.text()}")


async def open_dashboard(port: int, key: asyncssh.SSHKey, project_screen: bool) -> Session:
    session = Session()
    await session.open(port, key)
    await session.wait_text(f"Signed in as {USERNAME}")
    await session.press("j", f"http://{PROJECT}.")
    if project_screen:
        await session.press("\r", "Deployments")
    await asyncio.sleep(0.5)  # the screen's first loads
    session.parsing = False  # from here only raw chunks: the bench must not slow them down
    return session


async def committed(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    return value


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(conn: asyncpg.Connection, pid: int, seconds: float) -> tuple[float, float]:
    """Transactions per second and server CPU (% of a core) while nobody types."""
    # A backend that goes idle reports its counts up to 10 s later: let the last loads' land.
    await asyncio.sleep(12)
    before, cpu_before, started = await committed(conn), cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    # PostgreSQL publishes a backend's counts at most every second: wait for the last ones.
    await asyncio.sleep(1.5)
    after, cpu_after = await committed(conn), cpu_seconds(pid)
    elapsed = time.perf_counter() - started - 1.5
    own = 1  # the read of `before` (the read of `after` counts after itself)
    return (after - before - own) / elapsed, (cpu_after - cpu_before) * 100 / elapsed


async def event_to_screen(
    conn: asyncpg.Connection, deployment_id: int, watchers: list[Session], rounds: int, pid: int
) -> tuple[list[float], float]:
    """Commit to shown, per round and watcher; and the server's CPU seconds from each commit
    until every watcher showed it, summed."""
    delays: list[float] = []
    cpu = 0.0
    for round_number in range(rounds):
        state, word = STATES[round_number % 2]
        for session in watchers:
            session.watch_for, session.seen_at = word, None
            session.seen.clear()
        started, cpu_before = time.perf_counter(), cpu_seconds(pid)
        await conn.execute(
            "UPDATE deployments SET state = $2, finished_at = CASE $2 WHEN 'failed' THEN now() END"
            " WHERE id = $1",
            deployment_id,
            state,
        )
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(session.seen.wait() for session in watchers))
        cpu += cpu_seconds(pid) - cpu_before
        delays += [session.seen_at - started for session in watchers if session.seen_at]
        await asyncio.sleep(2)
    return delays, cpu


@contextlib.asynccontextmanager
async def profiled(ghst: GhstProcess, folder: Path | None, name: str) -> AsyncIterator[None]:
    """The server's profile of what runs inside, as folder/name.prof (nothing without folder)."""
    if folder is None:
        yield
        return
    await ghst.profile(f"{name}.prof")
    try:
        yield
    finally:
        await ghst.profile(None)


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def bench(args: argparse.Namespace) -> str:
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = Path(tempfile.mkdtemp(prefix="ghst-bench-events-"))
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    postgres.start()
    redis.start()
    ghst: GhstProcess | None = None
    sessions: list[Session] = []
    rows: list[str] = []
    try:
        settings = Settings(
            data_dir=work / "data",
            database_url=postgres.dsn(),
            redis_url=redis.url(),
            bcrypt_rounds=4,
            instance=bench_instance(),
        )
        panel = await Panel.open(settings)  # migrates
        key = asyncssh.generate_private_key("ssh-ed25519")
        public = bytes(key.export_public_key("openssh")).decode().strip()
        try:
            user = await panel.accounts.sign_up(USERNAME, "bench@example.com", "bench password 1")
            await panel.keys.add(as_user(user.id), public + " bench", "bench")
            project = await panel.projects.create(as_user(user.id), PROJECT)
        finally:
            await panel.close()
        conn = await asyncpg.connect(settings.database_url)
        deployment_id: int = await conn.fetchval(
            "INSERT INTO deployments"
            " (project_id, project_name, user_id, archive_name, state, started_at)"
            " VALUES ($1, $2, $3, 'v1-app.zip', 'building', now()) RETURNING id",
            project.id,
            project.name,
            user.id,
        )
        env = panel_env(settings, dict(os.environ), GHST_NGINX_MANAGED="0")
        env["PYTHONPATH"] = str(ROOT)
        ghst = GhstProcess(env, profile=args.profile)
        await ghst.start()
        idle_rate, idle_cpu = await idle(conn, ghst.pid, args.idle)
        rows.append(
            f"| 0 | — | {idle_rate:.1f} | {idle_cpu:.1f}% ({idle_cpu * args.idle / 100:.2f} s)"
            " | — | — | — | — |"
        )
        for count in args.sessions:
            while len(sessions) < count:
                batch = min(OPEN_AT_ONCE, count - len(sessions))
                sessions += await asyncio.gather(
                    *(
                        open_dashboard(ghst.port, key, (len(sessions) + n) % 2 == 0)
                        for n in range(batch)
                    )
                )
            watchers = sessions[::2]
            # Idle means nothing happening: no build running either (its duration would tick).
            await conn.execute(
                "UPDATE deployments SET state = 'failed', finished_at = now() WHERE id = $1",
                deployment_id,
            )
            async with profiled(ghst, args.profile, f"idle-{count}"):
                idle_rate, idle_cpu = await idle(conn, ghst.pid, args.idle)
            async with profiled(ghst, args.profile, f"events-{count}"):
                delays, cpu = await event_to_screen(
                    conn, deployment_id, watchers, args.rounds, ghst.pid
                )
            rows.append(
                f"| {count} | {len(watchers)} | {idle_rate:.1f} |"
                f" {idle_cpu:.1f}% ({idle_cpu * args.idle / 100:.2f} s) |"
                f" {statistics.median(delays) * 1000:.0f} ms |"
                f" {percentile(delays, 99) * 1000:.0f} ms | {max(delays) * 1000:.0f} ms |"
                f" {cpu * 1000 / len(delays):.1f} ms |"
            )
        await conn.close()
    finally:
        for start in range(0, len(sessions), 20):
            await asyncio.gather(*(s.close() for s in sessions[start : start + 20]))
        if ghst is not None:
            await ghst.stop()
        postgres.stop()
        redis.stop()
        for path in (pg_root, redis_root, work):
            shutil.rmtree(path, ignore_errors=True)
    header = [
        f"Code: {ROOT} · Python {platform.python_version()} · {os.cpu_count()} cores ·"
        f" idle window {args.idle:.0f} s · {args.rounds} state changes ·"
        f" load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| Dashboards open | of them on the project screen | PostgreSQL transactions/s idle"
        " | server CPU idle (CPU seconds) | state change to screen p50 | p99 | max"
        " | server CPU per screen and change |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(header + rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="20,100", help="comma-separated, increasing")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idleness measured")
    parser.add_argument("--rounds", type=int, default=5, help="state changes timed")
    parser.add_argument("--profile", type=Path, help="a folder for the server's profiles")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    args.sessions = [int(n) for n in args.sessions.split(",")]
    requirements.require("bench/events.py", NEEDS)
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
