"""The audit log at scale: writing an entry, a user's pages and an operator's filtered page over
a table of 1,000,000 entries, a capped refusal, and retention. Prints a markdown table.

    .venv/bin/python bench/audit.py [--entries 1000000] [--users 10000] [--runs 200]

What it does (on 127.0.0.1, with its own PostgreSQL from tests/services.py; no Redis, no
Docker): migrates, fills `audit_events` with `--entries` rows over `--users` accounts (set-based
SQL, spread over the last 400 days), then times, median of `--runs`:

- `entries.record` in a transaction of its own (what a change adds to its transaction is one
  INSERT; this includes BEGIN/COMMIT);
- `entries.record_unhappy`: a refused attempt, counted against its account's hourly cap;
- a user's first page (50 newest) and a page deep in their history (keyset);
- an operator's page of one action over everyone;

and once: retention of the entries older than 365 days (export to JSON lines, then delete).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_CODE") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from core.actor import Actor  # noqa: E402
from core.audit import entries  # noqa: E402
from core.audit.service import AuditService  # noqa: E402
from core.db.migrations import migrate  # noqa: E402
from core.db.pool import Connection, create_pool  # noqa: E402
from tests.services import PostgresServer, temp_root  # noqa: E402

CHUNK = 100_000
ACTIONS = ("login", "project.create", "env.set", "archive.upload", "deployment.deploy")


async def fill(conn: Connection, first: int, last: int, args: argparse.Namespace) -> None:
    """Entries `first`..`last` (higher n: older), the oldest 400 days back."""
    await conn.execute(
        "INSERT INTO audit_events (at, actor_kind, actor_user_id, actor_label, origin,"
        " action, target_kind, target_name, owner_id, outcome, source_address,"
        " request_id, metadata)"
        " SELECT now() - (n * interval '400 days') / $1, 'user', 1 + n % $2, 'user',"
        " 'dashboard', ($3::text[])[1 + n % 5], 'project', 'p' || n % 7, 1 + n % $2,"
        " 'ok', '192.0.2.1', md5(n::text), '{}'::jsonb"
        " FROM generate_series($4::bigint, $5::bigint) AS n ORDER BY n DESC",
        args.entries,
        args.users,
        list(ACTIONS),
        first,
        last,
    )


async def median_of(runs: int, step: Callable[[int], Awaitable[object]]) -> float:
    times = []
    for run in range(runs):
        started = time.perf_counter()
        await step(run)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def bench(args: argparse.Namespace) -> str:
    postgres = PostgresServer(temp_root("ghst-bench-audit-pg-"))
    postgres.start()
    rows: list[tuple[str, float, str]] = []
    try:
        pool = await create_pool(postgres.dsn())
        async with pool.acquire() as conn:
            await migrate(conn)
            started = time.perf_counter()
            for first in range(1, args.entries + 1, CHUNK):  # within the pool's statement timeout
                await fill(conn, first, min(args.entries, first + CHUNK - 1), args)
            await conn.execute("VACUUM ANALYZE audit_events")
            filling = time.perf_counter() - started
        user = Actor("user", 42, "user").acting_from("dashboard", source_address="192.0.2.9")

        async def record(run: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await entries.record(
                    conn, user, "env.set", entries.Target("project", "shop", 1, 42), "ok"
                )

        async def refused(run: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await entries.record_unhappy(
                    conn, user, "project.delete", entries.Target("project", f"x{run}"), "refused",
                    None, per_hour=60,
                )  # fmt: skip

        service = AuditService(pool, export_dir=Path(tempfile.mkdtemp(prefix="ghst-bench-audit-")))
        async with pool.acquire() as conn:
            deep = await conn.fetchval(
                "SELECT id FROM audit_events WHERE actor_user_id = 42 ORDER BY id LIMIT 1 OFFSET 20"
            )
        rows.append(("write one entry (own transaction)", await median_of(args.runs, record), ""))
        rows.append(
            ("write one refused entry (capped)", await median_of(args.runs, refused), "cap 60/h")
        )
        rows.append(
            (
                "a user's first page (50)",
                await median_of(args.runs, lambda _: service.list(user)),
                f"{args.entries // args.users:,} entries per user",
            )
        )
        rows.append(
            (
                "a user's page deep in history",
                await median_of(args.runs, lambda _: service.list(user, before_id=deep)),
                "keyset, before an old id",
            )
        )
        operator = Actor.system("bench")
        rows.append(
            (
                "operator: one action, everyone (50)",
                await median_of(
                    args.runs, lambda _: service.list(operator, everyone=True, action="env.set")
                ),
                "",
            )
        )
        started = time.perf_counter()
        pruned = await service.retain()
        rows.append(
            ("retention (export then prune)", time.perf_counter() - started, f"{pruned:,} entries")
        )
        await pool.close()
    finally:
        postgres.stop()
    lines = [
        f"audit bench on {platform.node()} ({os.cpu_count()} CPUs), PostgreSQL from"
        f" tests/services.py; {args.entries:,} entries written in {filling:.1f} s",
        "",
        "| what | ms | notes |",
        "|---|---:|---|",
        *(f"| {label} | {seconds * 1000:.2f} | {notes} |" for label, seconds, notes in rows),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    requirements.require("bench/audit.py", (requirements.POSTGRES,))
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
