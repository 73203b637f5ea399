"""Billing at scale: the daily charge over 100,000 active projects, and rebuilding one user's
balance from a ledger of 1,000,000 entries. Prints a markdown table.

    .venv/bin/python bench/billing.py [--projects 100000] [--entries 1000000] [--runs 3]

What it does (on 127.0.0.1, with its own PostgreSQL from tests/services.py; no Redis, no
Docker): migrates, seeds the plans, then makes `--projects` projects over `--projects / 10`
accounts with set-based SQL (ten projects per account, plans host-0/1/2 in turn). It then times
`DailyCharge.run` (core/billing/charges.py, what the workers run):

- first day: one day charged for every project (one INSERT ... SELECT, balances updated in the
  same statement);
- same day again: nothing left to charge (every key is taken), what each periodic run costs;
- three days of catch-up, as after downtime;

and, for one account given `--entries` ledger entries (on top of everyone's charges), the time
to sum its balance from the ledger (`ledger.rebuilt_balance`), median of `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from core.billing import ledger  # noqa: E402
from core.billing.charges import DailyCharge  # noqa: E402
from core.billing.plans import PlanService  # noqa: E402
from core.db.migrations import migrate  # noqa: E402
from core.db.pool import Connection, create_pool  # noqa: E402
from tests.services import PostgresServer, temp_root  # noqa: E402

FIRST_DAY = date(2026, 12, 10)
GOAL_SECONDS = 10.0


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)


async def populate(db: Connection, projects: int) -> None:
    """Accounts and projects on paid plans, made in a few statements (a bench's fixture)."""
    accounts = max(1, projects // 10)
    await db.execute(
        "INSERT INTO users (username, email, password_hash)"
        " SELECT 'user-' || n, 'user-' || n || '@example.com', 'x'"
        " FROM generate_series(1, $1) AS n",
        accounts,
    )
    await db.execute(
        "INSERT INTO projects (user_id, name) SELECT 1 + (n - 1) / 10, 'project-' || n"
        " FROM generate_series(1, $1) AS n",
        projects,
    )
    await db.execute(
        "INSERT INTO project_plans (project_id, user_id, plan_id, price_kopecks, billed_from)"
        " SELECT p.id, p.user_id, plan.id, plan.price_kopecks, $1"
        " FROM projects p JOIN plans plan"
        "  ON plan.code = 'host-' || (p.id % 3) AND plan.version = 1",
        FIRST_DAY,
    )
    await db.execute("VACUUM ANALYZE")


async def bench(args: argparse.Namespace) -> str:
    postgres = PostgresServer(temp_root("ghst-bench-pg-"))
    postgres.start()
    rows: list[tuple[str, float, str]] = []
    try:
        pool = await create_pool(postgres.dsn())
        async with pool.acquire() as conn:
            await migrate(conn)
        await PlanService(pool).seed()
        async with pool.acquire() as conn:
            started = time.perf_counter()
            await populate(conn, args.projects)
            setup = time.perf_counter() - started
        charges = DailyCharge(pool, "Europe/Moscow")

        async def timed(label: str, day: date) -> None:
            started = time.perf_counter()
            run = await charges.run(noon(day))
            elapsed = time.perf_counter() - started
            assert run is not None
            rows.append((label, elapsed, f"{run.posted:,} entries over {len(run.days)} day(s)"))

        await timed(f"daily charge, {args.projects:,} projects, first day", FIRST_DAY)
        await timed("same day again (nothing due)", FIRST_DAY)
        await timed("catch-up after 3 days down", FIRST_DAY + timedelta(3))

        async with pool.acquire() as conn:
            started = time.perf_counter()
            await conn.execute(
                "INSERT INTO ledger (user_id, kind, amount, idempotency_key, actor)"
                " SELECT 1, 'adjustment', 1 + n % 1000, 'bench:' || n, 'bench'"
                " FROM generate_series(1, $1) AS n",
                args.entries,
            )
            await conn.execute("VACUUM ANALYZE ledger")
            filling = time.perf_counter() - started
            total_entries = await conn.fetchval("SELECT count(*) FROM ledger")
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                balance = await ledger.rebuilt_balance(conn, 1)
                times.append(time.perf_counter() - started)
        rows.append(
            (
                f"rebuild one balance from {args.entries:,} of its entries",
                statistics.median(times),
                f"median of {args.runs}; ledger {total_entries:,} rows; sum {balance:,}",
            )
        )
        await pool.close()
    finally:
        postgres.stop()
    verdict = "meets" if rows[0][1] <= GOAL_SECONDS else "misses"
    lines = [
        f"billing bench on {platform.node()} ({os.cpu_count()} CPUs), PostgreSQL from"
        f" tests/services.py; setup {setup:.1f} s, {args.entries:,} entries written in {filling:.1f} s",
        "",
        "| what | seconds | notes |",
        "|---|---:|---|",
        *(f"| {label} | {seconds:.2f} | {notes} |" for label, seconds, notes in rows),
        "",
        f"The first day's charge {verdict} the goal of {GOAL_SECONDS:.0f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    requirements.require("bench/billing.py", (requirements.POSTGRES,))
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
