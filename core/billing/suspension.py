"""Running out of money: paid projects suspended after a grace period, resumed by a credit.

`arrears` (this module owns it) holds since when each account's balance has been zero or
below. Triggers on `balances` keep it (migration 0013), so every way money moves counts: a
charge, a payment, an operator's adjustment, a promised payment taken back.

Suspension. Once an account has been in arrears for the grace period, each of its paid
projects is suspended (free ones never are): `suspended_at` set, so the daily charge skips it;
its queued deployments cancelled and a stop queued, so a worker stops its containers through
the same job as an owner's stop and nginx shows the "suspended" page; deploys, starts and
uploads refused with the reason (a `Hold` on projects, see core.projects.holds). Data is kept;
nothing is deleted. `run` is a worker's chore, after the daily charge and once when a worker
starts; a session advisory lock keeps it one runner at a time over every worker, and each
account is suspended in its own transaction holding its balance row, so a payment committing
meanwhile either comes first (and the account is no longer in arrears) or waits for the
suspension and resumes it.

Resume. A credit (a payment, an adjustment, a promised payment) calls `after_credit` in the
transaction that posts it: a payment first takes back the account's open promised payments;
then, if the balance is above zero, the account's suspended projects are resumed in that same
transaction and a start is queued for each (a stop, for one its owner had stopped before, so
its own stopped page comes back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.actor import Actor
from core.billing import ledger, promised, subscriptions
from core.billing.subscriptions import CHARGE_LOCK
from core.db.pool import Connection, Pool, connection
from core.db.unit import reading
from core.deploy.service import DeploymentService
from core.errors import PanelError, SuspendedError
from core.projects.holds import StoppedPage
from core.projects.service import ProjectService

log = logging.getLogger(__name__)

SUSPEND_LOCK = 0x6768_7374_7375_7370  # "ghstsusp"
CANCELLED = "The project was suspended for non-payment before this could run."


def refusal(what: str, keep_days: int) -> str:
    return (
        f"This project is suspended for non-payment, so it cannot {what} now. Top up your"
        " balance (or take a promised payment): suspended projects start again by themselves"
        f" once the balance is above zero. Nothing was deleted; data is kept {keep_days} days."
    )


@dataclass(frozen=True)
class SuspensionRun:
    accounts: tuple[int, ...]  # accounts whose projects were suspended now
    projects: tuple[int, ...]  # the projects suspended now


class Suspensions:
    """Decides suspensions and resumes; also the projects' `Hold` that refuses their work."""

    def __init__(
        self,
        pool: Pool,
        projects: ProjectService,
        deployments: DeploymentService,
        *,
        grace: timedelta,
        keep_days: int,
    ) -> None:
        self._pool = pool
        self._projects = projects
        self._deployments = deployments
        self.grace = grace
        self.keep_days = keep_days
        self.actor = Actor.system("billing").acting_from("scheduler")

    # --- the Hold on projects -----------------------------------------------------------------

    async def refuse(self, conn: Connection, project_id: int, what: str) -> None:
        found = await subscriptions.suspension_of(conn, project_id)
        if found is not None and found[0] is not None:
            raise SuspendedError(refusal(what, self.keep_days))

    async def stopped_page(self, project_id: int) -> StoppedPage:
        async with reading(self._pool) as db:
            found = await subscriptions.suspension_of(db, project_id)
        if found is None:
            return "stopped"
        suspended_at, free = found
        if suspended_at is not None:
            return "suspended"
        return "stopped-free" if free else "stopped"

    # --- suspending ---------------------------------------------------------------------------

    async def in_arrears_since(self, conn: Connection, user_id: int) -> datetime | None:
        """Since when the account's balance has been zero or below (None: above zero)."""
        since = await conn.fetchval("SELECT since FROM arrears WHERE user_id = $1", user_id)
        return since  # type: ignore[no-any-return]

    async def run(self, now: datetime | None = None) -> SuspensionRun | None:
        """Suspend the paid projects of every account in arrears for the grace period up to
        `now`; None when another runner is at it. Running it again changes nothing."""
        cutoff = (now or datetime.now(UTC)) - self.grace
        accounts: list[int] = []
        suspended: list[int] = []
        # The lock is a transaction's, on a connection of its own: pooled connections are
        # handed back without a reset, so a session lock could outlive a cancelled run.
        async with self._pool.acquire() as lock, lock.transaction():
            if not await lock.fetchval("SELECT pg_try_advisory_xact_lock($1)", SUSPEND_LOCK):
                return None
            async with connection(self._pool) as conn:
                due = await conn.fetch(
                    "SELECT user_id FROM arrears WHERE since <= $1 ORDER BY user_id", cutoff
                )
                users = await subscriptions.with_running_paid(conn, [r["user_id"] for r in due])
                for user_id in users:
                    projects = await self._suspend(conn, user_id, cutoff)
                    if projects:
                        accounts.append(user_id)
                        suspended.extend(projects)
        for user_id in accounts:
            await self._projects.invalidate(user_id)
        return SuspensionRun(tuple(accounts), tuple(suspended))

    async def _suspend(self, conn: Connection, user_id: int, cutoff: datetime) -> list[int]:
        async with conn.transaction():
            # The daily charge and plan changes first, then the balance (as a credit locks it).
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHARGE_LOCK)
            await ledger.lock_balance(conn, user_id)
            since = await self.in_arrears_since(conn, user_id)
            if since is None or since > cutoff:  # paid meanwhile
                return []
            paid = await subscriptions.paid_project_ids(conn, user_id)
            for project_id in paid:  # a deploy queued now waits, then sees the suspension
                await self._projects.lock(conn, project_id)
            flags = await self._projects.deploy_flags(paid, conn)
            stopped = {project_id for project_id, flag in flags.items() if flag.stopped}
            done = await subscriptions.suspend_paid(conn, user_id, stopped)
            for project_id in done:
                project = await self._projects.by_id(project_id, conn)
                if project is not None:
                    await self._deployments.hold(conn, project, self.actor, CANCELLED)
        if done:
            log.info("suspended projects %s of account %d for non-payment", done, user_id)
        return done

    async def run_logged(self) -> None:
        try:
            await self.run()
        except PanelError as error:
            log.warning("the suspension check did not run: %s", error)
        except Exception:
            log.exception("the suspension check failed")

    # --- resuming -----------------------------------------------------------------------------

    async def after_payment(self, conn: Connection, user_id: int) -> list[int]:
        """For a payment's transaction: take back open promised payments, then resume."""
        await promised.take_back_open(conn, user_id, self.actor.label, "paid by a top-up")
        return await self.after_credit(conn, user_id)

    async def after_credit(self, conn: Connection, user_id: int) -> list[int]:
        """In the transaction that posted a credit: resume the account's suspended projects
        if its balance is now above zero, and queue their start. The projects resumed."""
        if await ledger.balance(conn, user_id) <= 0:
            return []
        resumed = await subscriptions.resume_all(conn, user_id)
        for item in resumed:
            # An admin's hold (core.admin.holds) stays: money does not lift it.
            if await self._projects.holds.held(conn, item.project_id):
                continue
            project = await self._projects.by_id(item.project_id, conn)
            if project is not None:
                await self._deployments.release(
                    conn, project, self.actor, start=not item.stopped_before
                )
        if resumed:
            log.info("resumed projects %s of account %d", [r.project_id for r in resumed], user_id)
        return [item.project_id for item in resumed]
