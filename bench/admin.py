"""The admin app at scale: 100,000 users and 200,000 projects, the app driven by Pilot in
process. Prints a markdown table with the goals and the same queries timed in psql.

    .venv/bin/python bench/admin.py [--users 100000] [--projects 200000] [--runs 20]

What it does (on 127.0.0.1, with its own PostgreSQL from tests/services.py; no Redis, no
Docker): migrates, seeds the plans, then makes the accounts, the projects (two per account,
three in four on a plan) and one deployment per project (half of them live, some stopped,
some failed) with set-based SQL (generate_series). It then runs `AdminApp` (what `ghst admin`
runs) headless at 200x50 with Textual's Pilot, on the real `AdminService` (core/admin/), and
times from the key press to the rows drawn in the table:

- opening `:projects` (typed `:projects`, timed from Enter), from the users view;
- a `/` filter: each keystroke of a project's name, until the table shows that prefix's rows;
- paging: `ctrl+f` through the projects, each page until its first row is drawn (p50, p99).

The peer is the same SQL in psql (`\\timing`, the same database): what the screen adds on
top of the query is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from bench import requirements  # noqa: E402
from core.admin.service import AdminService  # noqa: E402
from core.billing.plans import PlanService  # noqa: E402
from core.db.migrations import migrate  # noqa: E402
from core.db.pool import Connection, Pool, create_pool  # noqa: E402
from core.events import EventHub  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.services import ServiceSet  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.services import PostgresServer, temp_root  # noqa: E402
from tui.admin.app import AdminApp  # noqa: E402
from tui.admin.base import AdminListScreen  # noqa: E402
from tui.admin.projects import AdminProjectsScreen  # noqa: E402
from tui.widgets.lines_table import LinesTable  # noqa: E402

GOALS = {"open": 0.300, "filter": 0.100, "page": 0.050}
SIZE = (200, 50)


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


def services(pool: Pool) -> ServiceSet:
    """The services the admin views call (reads need the pool alone), the rest left out."""
    admin = AdminService(
        pool,
        accounts=cast(Any, None),
        subscriptions=cast(Any, None),
        balances=cast(Any, None),
        promised=cast(Any, None),
        deployments=cast(Any, None),
    )
    names = {name: None for name in ServiceSet.__dataclass_fields__}
    names.update(settings=Settings(), events=EventHub.offline(), admin=admin)
    return ServiceSet(**cast(Any, names))


def table(pilot: Pilot[Any]) -> LinesTable:
    return pilot.app.screen.query_one("#rows", LinesTable)


async def drawn(pilot: Pilot[Any], ready: Any) -> float:
    """Seconds until `ready(screen)` holds with no load running (polled every loop turn)."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(0)
        screen = pilot.app.screen
        loader = getattr(screen, "_loader", None)
        if loader is not None and loader.is_finished and ready(screen):
            return time.perf_counter() - started
        if time.perf_counter() - started > 30:
            raise TimeoutError("the screen never showed its rows")


def first_key(screen: Any) -> str | None:
    rows = cast(AdminListScreen[Any], screen).rows
    return cast(str, screen.key_of(rows[0])) if rows else None


async def measure(pool: Pool, runs: int, projects: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"open": [], "filter": [], "page": [], "pilot": []}
    app = AdminApp(cast(Panel, services(pool)))
    async with app.run_test(size=SIZE) as pilot:
        await drawn(pilot, lambda screen: bool(screen.rows))
        for _ in range(runs):
            started = time.perf_counter()
            await pilot.press("f12")  # bound to nothing: what Pilot itself costs a key
            times["pilot"].append(time.perf_counter() - started)
        for _ in range(runs):
            await pilot.press("colon", *"projects")
            started = time.perf_counter()
            await pilot.press("enter")
            await drawn(
                pilot,
                lambda screen: isinstance(screen, AdminProjectsScreen) and table(pilot).row_count,
            )
            times["open"].append(time.perf_counter() - started)
            await pilot.press("colon", *"users", "enter")
            await drawn(pilot, lambda screen: not isinstance(screen, AdminProjectsScreen))
        await pilot.press("colon", *"projects", "enter")
        await drawn(pilot, lambda screen: isinstance(screen, AdminProjectsScreen))
        for run in range(runs):
            name = f"project-{(run * 7919) % projects + 1}"
            await pilot.press("slash")
            for length in range(1, len(name) + 1):
                prefix = name[:length]
                started = time.perf_counter()
                await pilot.press(name[length - 1])
                await drawn(
                    pilot,
                    lambda screen, p=prefix: (
                        screen.search == p
                        and all(screen.key_of(r).startswith(p) for r in screen.rows)
                    ),
                )
                times["filter"].append(time.perf_counter() - started)
            await pilot.press("escape", "escape")
            await drawn(pilot, lambda screen: screen.search == "")
        for _ in range(runs * 5):
            before = first_key(app.screen)
            started = time.perf_counter()
            await pilot.press("ctrl+f")
            await drawn(pilot, lambda screen, b=before: first_key(screen) != b)
            times["page"].append(time.perf_counter() - started)
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
    "page": "SELECT * FROM admin_projects WHERE name ~>~ 'project-150000'"
    " ORDER BY name USING ~<~ LIMIT 50",
}


def p(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


async def bench(args: argparse.Namespace) -> str:
    postgres = PostgresServer(temp_root("ghst-bench-admin-pg-"))
    postgres.start()
    try:
        pool = await create_pool(postgres.dsn())
        async with pool.acquire() as conn:
            await migrate(conn)
        await PlanService(pool).seed()
        async with pool.acquire() as conn:
            started = time.perf_counter()
            await populate(conn, args.users, args.projects)
            setup = time.perf_counter() - started
        times = await measure(pool, args.runs, args.projects)
        await pool.close()
        peers = {what: psql_ms(postgres.dsn(), sql, 20) for what, sql in PEER_SQL.items()}
    finally:
        postgres.stop()
    rows = [
        ("opening `:projects`, to the first rows", "open", "p50", p(times["open"], 50)),
        ("opening `:projects`, to the first rows", "open", "p99", p(times["open"], 99)),
        ("a `/` filter, per keystroke", "filter", "p50", p(times["filter"], 50)),
        ("a `/` filter, per keystroke", "filter", "p99", p(times["filter"], 99)),
        ("paging (`ctrl+f`), per page", "page", "p50", p(times["page"], 50)),
        ("paging (`ctrl+f`), per page", "page", "p99", p(times["page"], 99)),
    ]
    pilot = statistics.median(times["pilot"]) * 1000
    lines = [
        f"admin bench on {platform.node()} ({os.cpu_count()} CPUs): {args.users:,} users,"
        f" {args.projects:,} projects, {args.projects:,} deployments (made in {setup:.1f} s);"
        f" AdminApp driven by Pilot in process at {SIZE[0]}x{SIZE[1]}, real AdminService;"
        " peer: the same query in psql, same database.",
        "",
        "| measure | stat | app (ms) | goal (ms) | meets | psql, same query (ms) | samples |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for label, what, stat, seconds in rows:
        goal = GOALS[what]
        verdict = "yes" if seconds <= goal else "NO"
        lines.append(
            f"| {label} | {stat} | {seconds * 1000:.1f} | {goal * 1000:.0f} | {verdict}"
            f" | {peers[what] * 1000:.1f} | {len(times[what])} |"
        )
    lines += [
        "",
        f"Each app time includes Pilot's own cost of a key press (waiting for the app to be idle"
        f" and its screen drawn): {pilot:.1f} ms median for a key bound to nothing. The machine"
        f" is shared (load average {os.getloadavg()[0]:.1f} at the end of the run).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    requirements.require("bench/admin.py", (requirements.POSTGRES,))
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
