"""The daily charge: every active paid project pays its plan's share of each day, once.

One statement per day charges every project (set-based), keyed `charge:<project>:<day>` so a
rerun posts nothing twice. A run starts at the last day a run covered (projects made after it
ran still pay for it) and goes up to today, so days missed while the panel was down are each
charged once. An advisory lock keeps it a singleton over every worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from core.actor import Actor
from core.audit import entries as audit
from core.billing import ledger, subscriptions
from core.billing.proration import DayOfMonth, billing_day
from core.db.pool import Connection, Pool
from core.db.unit import transaction
from core.errors import PanelError

log = logging.getLogger(__name__)

# Downtime longer than this is an operator's decision, not something to bill silently.
MAX_CATCH_UP_DAYS = 62


@dataclass(frozen=True)
class ChargeRun:
    days: tuple[date, ...]
    posted: int


async def charge_day(conn: Connection, day: date, actor: Actor) -> int:
    """Charge every active paid project for `day`; how many entries were posted."""
    month = DayOfMonth.of(day)
    posted = await ledger.post_selected(
        conn, subscriptions.charge_source(), day, month.days, month.last, actor.label
    )
    if posted:
        # One entry for the day's set-based run; each charge is in the account's ledger.
        await audit.record(
            conn,
            actor,
            "billing.charge_day",
            audit.Target("day", str(day)),
            metadata={"entries": posted},
        )
    return posted


class DailyCharge:
    def __init__(self, pool: Pool, time_zone: str, actor: Actor | None = None) -> None:
        self._pool = pool
        self._time_zone = time_zone
        self._actor = actor or Actor.system("billing").acting_from("scheduler")

    async def run(self, now: datetime | None = None) -> ChargeRun | None:
        """Charge the days due up to `now`'s day; None when another runner holds the lock."""
        today = billing_day(now or datetime.now(UTC), self._time_zone)
        async with transaction(self._pool) as tx:
            if not await tx.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", subscriptions.CHARGE_LOCK
            ):
                return None
            last = await tx.fetchval("SELECT max(day) FROM charge_runs")
            first = today if last is None else max(last, today - timedelta(MAX_CATCH_UP_DAYS))
            days = tuple(first + timedelta(n) for n in range((today - first).days + 1))
            posted = 0
            for day in days:
                posted += await charge_day(tx, day, self._actor)
                await tx.execute(
                    "INSERT INTO charge_runs (day) VALUES ($1)"
                    " ON CONFLICT (day) DO UPDATE SET finished_at = now()",
                    day,
                )
        return ChargeRun(days, posted)

    async def run_logged(self) -> None:
        """`run` for a worker's loop: a failure is logged and retried on the next round."""
        try:
            charged = await self.run()
        except PanelError as error:
            log.warning("the daily charge did not run: %s", error)
            return
        except Exception:
            log.exception("the daily charge failed")
            return
        if charged is not None and charged.posted:
            days = ", ".join(day.isoformat() for day in charged.days)
            log.info("daily charge: %d entries for %s", charged.posted, days)


async def charged_through(conn: Connection) -> date | None:
    """The last day a charge run covered (None before the first run)."""
    day: date | None = await conn.fetchval("SELECT max(day) FROM charge_runs")
    return day
