"""The admin app at scale, as an operator sees it: 100,000 users and 200,000 projects, `ghst admin`
run as a process in a pseudo-terminal, its screen read with pyte. Prints a markdown table with
the goals and the same queries timed in psql.

    .venv/bin/python bench/admin.py [--users 100000] [--projects 200000] [--runs 20]
                                    [--profile FOLDER] [--explain]

What it does (on 127.0.0.1, with its own PostgreSQL from tests/services.py; no Redis, no
Docker): migrates, seeds the plans, then makes the accounts, the projects (two per account,
three in four on a plan) and one deployment per project (half of them live, some stopped,
some failed) with set-based SQL (generate_series). It then starts `ghst admin` (the real entry
point, in a pty of 200x50) and times from writing a key to the arrival of the output after
which the screen shows the result (each chunk of output is stamped as it arrives and parsed
once the output pauses: pyte is far slower than a terminal, and parsing as it comes would
delay the stamps):

- opening `:projects` (typed `:projects`, timed from Enter), from the users view, until the
  status line says page 1 and the first row is the first project;
- a `/` filter: each keystroke of a project's name, once the screen showed the previous one,
  until the status line shows the filter and the first row is the first name with that prefix;
- a whole name written at once (a paste, or fast typing), until its rows show;
- paging: `ctrl+f` through the projects, until the status line shows the next page and its
  first row is the expected one.

The peer is the same SQL in psql (`\\timing`, the same database): what the app adds on top of
the query is the difference. `--profile FOLDER`: the app runs under bench/profiled_serve.py,
and each phase's CPU profile (the app's main thread) is written to FOLDER/<phase>.prof.
`--explain`: the plans (EXPLAIN ANALYZE) of the peer queries and other key-set pages.
BENCH_ADMIN_SITE=FOLDER puts FOLDER on the app's PYTHONPATH (a sitecustomize.py there can
watch the app from inside, e.g. time the garbage collector's passes with gc.callbacks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import platform
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

import pyte  # noqa: E402

from bench import requirements  # noqa: E402
from bench.panel_process import bench_instance  # noqa: E402
from core.billing.plans import PlanService  # noqa: E402
from core.db.migrations import migrate  # noqa: E402
from core.db.pool import Connection, create_pool  # noqa: E402
from tests.services import PostgresServer, temp_root  # noqa: E402

GOALS = {"open": 0.300, "filter": 0.100, "paste": 0.100, "page": 0.050}
WIDTH, HEIGHT = 200, 50
TIMEOUT = 30.0
# Output is parsed once it pauses this long (the stamps are taken on arrival all the same).
QUIET = 0.15
PAGE = 50


async def populate(db: Connection, users: int, projects: int) -> None:
    await db.execute(
        "INSERT INTO users (username, email, password_hash)"
        " SELECT 'user-' || n, 'user-' || n || '@example.com', 'x'"
        " FROM generate_series(1, $1) AS n",
        users,
    )
    await db.execute(
        "INSERT INTO projects (user_id, name) SELECT 1 + (n - 1) % $2, 'project-' || n"
        " FROM generate_series(1, $1) AS n",
        projects,
        users,
    )
    await db.execute(
        "INSERT INTO project_plans (project_id, user_id, plan_id, price_kopecks, billed_from)"
        " SELECT p.id, p.user_id, plan.id, plan.price_kopecks, current_date"
        " FROM projects p JOIN plans plan ON plan.code = 'host-' || (p.id % 4) AND plan.version = 1"
    )
    await db.execute(
        "INSERT INTO deployments (project_id, user_id, archive_name, state, project_name)"
        " SELECT id, user_id, 'v1-app.zip',"
        "  CASE WHEN id % 2 = 0 THEN 'running' WHEN id % 7 = 0 THEN 'failed' ELSE 'superseded' END,"
        "  name FROM projects"
    )
    await db.execute(
        "UPDATE projects p SET live_deployment_id = d.id, stopped = (p.id % 10 = 0)"
        " FROM deployments d WHERE d.project_id = p.id AND d.state = 'running'"
    )
    await db.execute("VACUUM ANALYZE")


class Terminal:
    """A command in a pseudo-terminal of WIDTH x HEIGHT: its output stamped on arrival, and a
    pyte screen fed with it on demand."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(WIDTH, HEIGHT)
        self.stream = pyte.ByteStream(self.screen)
        self.process: asyncio.subprocess.Process | None = None
        self.master = -1
        self.pending: list[tuple[float, bytes]] = []
        self.last_output = 0.0
        self.output = asyncio.Event()
        self.closed: Exception | None = None

    async def start(self, command: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        self.process = await asyncio.create_subprocess_exec(
            "setsid", "-c", *command, stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        arrived = time.perf_counter()
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return
        except OSError:  # EIO: the app exited
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed = RuntimeError("the app exited")
        else:
            self.pending.append((arrived, data))
            self.last_output = arrived
        self.output.set()

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def send(self, data: bytes) -> float:
        sent = time.perf_counter()
        os.write(self.master, data)
        return sent

    async def quiet(self) -> None:
        """Until no output came for QUIET seconds."""
        while True:
            self.output.clear()
            try:
                await asyncio.wait_for(self.output.wait(), QUIET)
            except TimeoutError:
                return

    async def shown(self, check: Callable[[pyte.Screen], bool], what: str) -> float:
        """The arrival time of the chunk of output after which `check(screen)` holds."""
        deadline = time.perf_counter() + TIMEOUT
        while True:
            await self.quiet()
            found = None
            while self.pending:
                arrived, data = self.pending.pop(0)
                self.stream.feed(data)  # all of it: a chunk may end inside an escape sequence
                if found is None and check(self.screen):
                    found = arrived
            if found is not None:
                return found
            if self.closed is not None:
                raise RuntimeError(f"the app exited; screen:\n{self.text()}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no {what}; screen:\n{self.text()}")

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x11")  # ctrl+q: leave the app
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = -1


def status_line(screen: pyte.Screen) -> str:
    for line in screen.display:
        if "  ·  page " in line:
            return line.strip()
    return ""


def first_row(screen: pyte.Screen, header: str) -> str | None:
    """The first word of the row under the table's header (the line that starts with
    `header`), or None if there is none."""
    lines = screen.display
    for index, line in enumerate(lines[:-1]):
        if line.strip().startswith(header):
            words = lines[index + 1].split()
            return words[0] if words else None
    return None


def showing(view: str, header: str, page: int, first: str, search: str = "") -> Callable[..., bool]:
    """A check: `view`'s status line at `page` (with `search`), `first` the first row."""
    wanted = f"{view}  ·  " + (f"filter /{search}  ·  " if search else "") + f"page {page}: "

    def check(screen: pyte.Screen) -> bool:
        return status_line(screen).startswith(wanted) and first_row(screen, header) == first

    return check


class Profiler:
    """Phases of the app profiled (bench/profiled_serve.py's signals), if asked."""

    def __init__(self, folder: Path | None, terminal: Terminal) -> None:
        self.folder = folder
        self.terminal = terminal

    @contextlib.asynccontextmanager
    async def phase(self, name: str):  # type: ignore[no-untyped-def]
        if self.folder is None:
            yield
            return
        await self._switch(f"{name}.prof")
        try:
            yield
        finally:
            await self._switch(None)

    async def _switch(self, name: str | None) -> None:
        assert self.folder is not None and self.terminal.process is not None
        if name is not None:
            (self.folder / "next").write_text(name)
        self.terminal.process.send_signal(signal.SIGUSR2 if name is None else signal.SIGUSR1)
        async with asyncio.timeout(30):
            while (self.folder / "on").exists() != (name is not None):  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def expected(dsn: str, names: list[str], pages: int) -> tuple[dict[str, str], list[str]]:
    """(the first project name of each prefix of `names`, the first name of each page)."""
    pool = await create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            firsts = {}
            for name in names:
                for length in range(1, len(name) + 1):
                    prefix = name[:length]
                    firsts[prefix] = await conn.fetchval(
                        "SELECT name FROM projects WHERE name LIKE $1"
                        " ORDER BY name USING ~<~ LIMIT 1",
                        prefix + "%",
                    )
            page_firsts = [
                row["name"]
                for row in await conn.fetch(
                    "SELECT name FROM (SELECT name, row_number() OVER (ORDER BY name USING ~<~)"
                    " AS n FROM projects) AS ordered WHERE (n - 1) % $1 = 0 AND n <= $2"
                    " ORDER BY name USING ~<~",
                    PAGE,
                    PAGE * pages,
                )
            ]
    finally:
        await pool.close()
    return firsts, page_firsts


def app_env(dsn: str, data_dir: Path, profile: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GHST_")}
    env.update(
        TERM="xterm-256color",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("BENCH_ADMIN_SITE")])]
        ),
        GHST_DATABASE_URL=dsn,
        GHST_REDIS_URL="redis://127.0.0.1:9/0",  # never reached by the list views
        GHST_DATA_DIR=str(data_dir),
        GHST_INSTANCE=bench_instance(),
    )
    if profile is not None:
        env["BENCH_PROFILE"] = str(profile)
    return env


async def measure(
    dsn: str, runs: int, projects: int, profile: Path | None
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"open": [], "filter": [], "paste": [], "page": []}
    names = [f"project-{(run * 7919) % projects + 1}" for run in range(runs)]
    firsts, page_firsts = await expected(dsn, names, runs * 5 + 1)
    program = (
        [sys.executable, str(ROOT / "bench" / "profiled_serve.py")]
        if profile
        else [str(Path(sys.executable).parent / "ghst")]
    )
    terminal = Terminal()
    await terminal.start(
        [*program, "--log-level", "WARNING", "admin"],
        app_env(dsn, temp_root("ghst-bench-admin-data-"), profile),
    )
    profiler = Profiler(profile, terminal)
    users = showing("users", "User", 1, "user-1")
    projects_first = showing("projects", "Project", 1, "project-1")
    try:
        await terminal.shown(users, "users view")
        async with profiler.phase("open"):
            for _ in range(runs):
                terminal.send(b":projects")
                await terminal.quiet()
                sent = terminal.send(b"\r")
                times["open"].append(await terminal.shown(projects_first, "projects") - sent)
                terminal.send(b":users\r")
                await terminal.shown(users, "users view again")
        terminal.send(b":projects\r")
        await terminal.shown(projects_first, "projects")
        async with profiler.phase("filter"):
            for name in names:
                terminal.send(b"/")
                await terminal.quiet()
                for length in range(1, len(name) + 1):
                    prefix = name[:length]
                    check = showing("projects", "Project", 1, firsts[prefix], prefix)
                    sent = terminal.send(name[length - 1].encode())
                    times["filter"].append(await terminal.shown(check, f"filter {prefix}") - sent)
                terminal.send(b"\x1b")  # the prompt closes, the filter stays
                await terminal.quiet()
                terminal.send(b"\x1b")  # the filter goes
                await terminal.shown(projects_first, "projects unfiltered")
        async with profiler.phase("paste"):
            for name in names:
                terminal.send(b"/")
                await terminal.quiet()
                check = showing("projects", "Project", 1, name, name)
                sent = terminal.send(name.encode())
                times["paste"].append(await terminal.shown(check, f"filter {name}") - sent)
                terminal.send(b"\x1b")
                await terminal.quiet()
                terminal.send(b"\x1b")
                await terminal.shown(projects_first, "projects unfiltered")
        async with profiler.phase("page"):
            for page, first in enumerate(page_firsts[1:], start=2):
                check = showing("projects", "Project", page, first)
                sent = terminal.send(b"\x06")  # ctrl+f
                times["page"].append(await terminal.shown(check, f"page {page}") - sent)
    finally:
        await terminal.close()
    return times


def psql_ms(dsn: str, sql: str, runs: int) -> float:
    """Median time psql reports (\\timing) for `sql`, run `runs` times in one session."""
    script = "\\timing on\n" + f"{sql};\n" * runs
    out = subprocess.run(
        ["psql", dsn, "-q", "-X", "-o", "/dev/null"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = [float(line.split()[1]) for line in out.splitlines() if line.startswith("Time:")]
    return statistics.median(found[1:] or found) / 1000


PEER_SQL = {
    "open": "SELECT * FROM admin_projects ORDER BY name USING ~<~ LIMIT 50",
    "filter": "SELECT * FROM admin_projects WHERE name LIKE 'project-1234%'"
    " ORDER BY name USING ~<~ LIMIT 50",
    "paste": "SELECT * FROM admin_projects WHERE name LIKE 'project-123456%'"
    " ORDER BY name USING ~<~ LIMIT 50",
    "page": "SELECT * FROM admin_projects WHERE name ~>~ 'project-150000'"
    " ORDER BY name USING ~<~ LIMIT 50",
}


# Key-set pages with the view's other filters, for --explain (not timed).
EXPLAINED = {
    **PEER_SQL,
    "state filter, deep page": "SELECT * FROM admin_projects WHERE state = 'failed'"
    " AND name ~>~ 'project-150000' ORDER BY name USING ~<~ LIMIT 50",
    # (as the app asks it: the ids of projects deploying, none here, from the deployments')
    "state filter no project is in": "SELECT * FROM admin_projects WHERE state = 'deploying'"
    " AND id = any('{}'::bigint[]) ORDER BY name USING ~<~ LIMIT 50",
    "the ids of projects deploying": "SELECT DISTINCT project_id FROM deployments WHERE state"
    " IN ('queued', 'building', 'starting', 'working') AND operation = 'deploy'",
    "user filter": "SELECT * FROM admin_projects WHERE username = 'user-4242'"
    " ORDER BY name USING ~<~ LIMIT 50",
    "users, deep page": "SELECT * FROM admin_users WHERE username ~>~ 'user-50000'"
    " ORDER BY username USING ~<~ LIMIT 50",
}


def explain(dsn: str) -> list[str]:
    """Each query's plan (EXPLAIN ANALYZE) as psql prints it."""
    lines = []
    for what, sql in EXPLAINED.items():
        out = subprocess.run(
            ["psql", dsn, "-X", "-A", "-t", "-c", f"EXPLAIN (ANALYZE, COSTS OFF) {sql}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines += ["", f"{what}: {sql}", "```", out.rstrip(), "```"]
    return lines


def p(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


async def bench(args: argparse.Namespace) -> str:
    postgres = PostgresServer(temp_root("ghst-bench-admin-pg-"))
    postgres.start()
    load_before = os.getloadavg()[0]
    try:
        pool = await create_pool(postgres.dsn())
        async with pool.acquire() as conn:
            await migrate(conn)
        await PlanService(pool).seed()
        async with pool.acquire() as conn:
            started = time.perf_counter()
            await populate(conn, args.users, args.projects)
            setup = time.perf_counter() - started
        await pool.close()
        load_before = os.getloadavg()[0]
        times = await measure(postgres.dsn(), args.runs, args.projects, args.profile)
        peers = {what: psql_ms(postgres.dsn(), sql, 20) for what, sql in PEER_SQL.items()}
        plans = explain(postgres.dsn()) if args.explain else []
    finally:
        postgres.stop()
    labels = {
        "open": "opening `:projects`, to the first rows",
        "filter": "a `/` filter, per keystroke",
        "paste": "a whole name at once (paste), to its rows",
        "page": "paging (`ctrl+f`), per page",
    }
    lines = [
        f"admin bench on {platform.node()} ({os.cpu_count()} CPUs): {args.users:,} users,"
        f" {args.projects:,} projects, {args.projects:,} deployments (made in {setup:.1f} s);"
        f" `ghst admin` in a pty at {WIDTH}x{HEIGHT}, its screen read with pyte, timed from"
        " the key written to the output that shows the result;"
        " peer: the same query in psql, same database.",
        "",
        "| measure | stat | app (ms) | goal (ms) | meets | psql, same query (ms) | samples |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for what, label in labels.items():
        goal = GOALS[what]
        for stat, percent in (("p50", 50), ("p99", 99)):
            seconds = p(times[what], percent)
            verdict = "yes" if seconds <= goal else "NO"
            lines.append(
                f"| {label} | {stat} | {seconds * 1000:.1f} | {goal * 1000:.0f} | {verdict}"
                f" | {peers[what] * 1000:.1f} | {len(times[what])} |"
            )
    lines += [
        "",
        f"Load average (1 min) {load_before:.2f} before the measured part,"
        f" {os.getloadavg()[0]:.2f} at its end.",
    ]
    lines += plans
    if args.profile is not None:
        lines.append(f"Profiles of the app's main thread: {args.profile}/<phase>.prof")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--explain", action="store_true", help="print the queries' plans")
    args = parser.parse_args()
    requirements.require("bench/admin.py", (requirements.POSTGRES,))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
