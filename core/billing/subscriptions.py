"""Each project's plan (this module owns `project_plans`): which plan version, since when,
suspended or not. A project gets a plan when it is made (free unless it names one); an account
holds the free plan for one project at most (a unique index, so races cannot beat it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Protocol

import asyncpg

from core.actor import Actor
from core.archives.quota import DiskRoom
from core.archives.service import ArchiveService
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.billing import ledger, plans
from core.billing.ledger import NewEntry
from core.billing.outlook import Outlook
from core.billing.plans import Plan
from core.billing.proration import billing_day, daily_share, upgrade_difference
from core.billing.usage import MiB, ProjectUsage, UsageMeter, limits_for, misfits, shrinks
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.deploy.limits import ProjectLimits, ProjectRuntime
from core.errors import ConflictError, NotFoundError, PanelError
from core.projects.service import Project, ProjectService

log = logging.getLogger(__name__)

# Held by the daily charge while it runs, and by a plan change while it decides whether today
# was charged: the two never interleave, so an upgrade's difference is charged exactly once.
CHARGE_LOCK = 0x6768_7374_6269_6C6C  # "ghstbill"

ONE_FREE = (
    "An account can have one free project. Choose a paid plan for this one (the new-project"
    " dialog and `billing plans` list them with their prices), or move your free project to a"
    " paid plan first."
)


class JobsInProgress(Protocol):
    """The deployments a worker holds (core.deploy.service.DeploymentService)."""

    async def in_progress(self, project_id: int, conn: Connection | None = None) -> int | None: ...


@dataclass(frozen=True)
class ProjectPlan:
    project_id: int
    user_id: int
    plan: Plan
    since: datetime
    billed_from: date
    suspended_at: datetime | None


def charge_source() -> str:
    """The ledger rows of one day's charge for every active paid project ($1 the day, $2 the
    days in its month, $3 whether it is the last, $4 the actor): for ledger.post_selected."""
    return (
        "SELECT user_id, 'charge', -share, 'charge:' || project_id || ':' || $1::date, $4::text,"
        " 'daily charge for ' || $1::date, project_id, $1::date, plan_id"
        " FROM (SELECT user_id, project_id, plan_id, CASE WHEN $3::boolean"
        "   THEN price_kopecks - (price_kopecks / $2::int) * ($2::int - 1)"
        "   ELSE price_kopecks / $2::int END AS share"
        "  FROM project_plans"
        "  WHERE suspended_at IS NULL AND price_kopecks > 0 AND billed_from <= $1::date) AS due"
        " WHERE share > 0"
    )


async def assign(conn: Connection, project: Project, plan: Plan, day: date) -> None:
    """Put a new project on `plan`, paying from `day`."""
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO project_plans (project_id, user_id, plan_id, price_kopecks,"
                " billed_from) VALUES ($1, $2, $3, $4, $5)",
                project.id, project.user_id, plan.id, plan.price_kopecks, day,
            )  # fmt: skip
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "project_plans_one_free":
            raise ConflictError(ONE_FREE) from error
        raise ConflictError("This project has a plan already.") from error


async def _load(conn: Connection, project_id: int, *, lock: bool = False) -> ProjectPlan | None:
    row = await conn.fetchrow(
        "SELECT project_id, user_id, plan_id, since, billed_from, suspended_at"
        f" FROM project_plans WHERE project_id = $1{' FOR UPDATE' if lock else ''}",
        project_id,
    )
    if row is None:
        return None
    plan = await plans.get(conn, row["plan_id"])
    assert plan is not None  # a foreign key
    return ProjectPlan(
        row["project_id"], row["user_id"], plan, row["since"], row["billed_from"],
        row["suspended_at"],
    )  # fmt: skip


@dataclass(frozen=True)
class PlanChangePreview:
    """What a plan change would cost, shown before the user confirms it."""

    current: Plan | None
    plan: Plan
    extra_today: int  # kopecks charged at once for the rest of today (an upgrade)
    monthly: int  # the new plan's monthly price


async def plan_names(conn: Connection, project_ids: list[int]) -> dict[int, str]:
    """Each project's current plan name (projects without a plan are left out)."""
    rows = await conn.fetch(
        "SELECT project_id, plan_id FROM project_plans WHERE project_id = ANY($1::bigint[])",
        project_ids,
    )
    names = {}
    for row in rows:
        plan = await plans.get(conn, row["plan_id"])
        if plan is not None:
            names[row["project_id"]] = plan.name
    return names


async def daily_spend(conn: Connection, user_id: int, day: date) -> int:
    """What the account's active paid projects cost on `day`, in kopecks."""
    prices = await conn.fetch(
        "SELECT price_kopecks FROM project_plans"
        " WHERE user_id = $1 AND suspended_at IS NULL AND price_kopecks > 0",
        user_id,
    )
    return sum(daily_share(row["price_kopecks"], day) for row in prices)


class SubscriptionService:
    def __init__(
        self,
        pool: Pool,
        projects: ProjectService,
        time_zone: str,
        *,
        defaults: ProjectLimits,
        archives: ArchiveService | None = None,
        runtime: ProjectRuntime | None = None,
        jobs: JobsInProgress | None = None,
    ) -> None:
        """`defaults`: the limits of a project made before billing (no plan: it keeps the
        settings' limits and pays nothing); `runtime`: where running containers get a new
        plan's limits at once and usage is measured (None: a panel without Docker); `jobs`:
        the deployments a worker holds (a downgrade waits until they end)."""
        self._jobs = jobs
        self._pool = pool
        self._projects = projects
        self._time_zone = time_zone
        self._defaults = defaults
        self._meter = UsageMeter(archives, runtime)

    def today(self) -> date:
        return billing_day(datetime.now(UTC), self._time_zone)

    @property
    def time_zone(self) -> str:
        """The billing time zone: its days and months are the ledger's."""
        return self._time_zone

    async def create_project(
        self,
        actor: Actor,
        name: str,
        plan_code: str = plans.FREE,
        *,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> tuple[Project, Plan]:
        """A new project on the current version of `plan_code`, in one transaction: refused
        (and not made) when the plan is unknown or a second free one."""
        async with transaction(self._pool, conn) as tx:
            plan = await plans.current(tx, plan_code)
            if plan is None:
                raise NotFoundError(f"No plan {plan_code!r}.")
            project = await self._projects.create(actor, name, owner_id=owner_id, conn=tx)
            await assign(tx, project, plan, self.today())
        if conn is not None:  # our transaction may still roll back with the caller's
            await self._projects.invalidate(project.user_id)
        return project, plan

    async def plan_of(
        self, actor: Actor, project_name: str, *, conn: Connection | None = None
    ) -> ProjectPlan | None:
        """The project's plan; None for a project made before billing (it pays nothing)."""
        actor.require("read")
        project = await self._projects.resolve(actor, project_name, conn=conn)
        async with reading(self._pool, conn) as db:
            return await _load(db, project.id)

    async def has_free_project(self, actor: Actor, *, owner_id: int | None = None) -> bool:
        """Does the account hold its one free project already?"""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool) as db:
            found = await db.fetchval(
                "SELECT 1 FROM project_plans WHERE user_id = $1 AND is_free", user_id
            )
        return found is not None

    async def limits_of(self, project_id: int) -> ProjectLimits | None:
        """The limits of the project's plan; None without one. For the runtime (no actor: the
        deployer acts for the project's owner, who queued the job)."""
        async with reading(self._pool) as db:
            current = await _load(db, project_id)
        return limits_for(current.plan) if current is not None else None

    async def disk_room(self, project_id: int) -> DiskRoom | None:
        """The project's disk on its plan (uploads' door); None without a plan."""
        limits = await self.limits_of(project_id)
        project = await self._projects.by_id(project_id)
        if limits is None or project is None:
            return None
        return await self._meter.disk_room(project_id, project.name, limits)

    async def usage(self, actor: Actor, project_name: str) -> ProjectUsage:
        """What the project uses now (CPU, RAM, disk, services) against its plan's limits."""
        actor.require("read")
        project = await self._projects.resolve(actor, project_name)
        limits = await self.limits_of(project.id) or self._defaults
        return await self._meter.measure(project.id, project.name, limits)

    async def outlook(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> Outlook:
        """The balance and today's spend: how many days are left, and whether to warn."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            balance = await ledger.balance(db, user_id)
            spend = await daily_spend(db, user_id, self.today())
        return Outlook(balance, spend)

    async def preview_change(
        self, actor: Actor, project_name: str, plan_code: str, *, conn: Connection | None = None
    ) -> PlanChangePreview:
        """What moving the project to `plan_code` would cost, changing nothing."""
        actor.require("read")
        project = await self._projects.resolve(actor, project_name, conn=conn)
        async with reading(self._pool, conn) as db:
            plan = await plans.current(db, plan_code)
            if plan is None:
                raise NotFoundError(f"No plan {plan_code!r}.")
            current = await _load(db, project.id)
        old_price = current.plan.price_kopecks if current is not None else 0
        extra = 0  # a suspended project pays nothing today
        if current is None or current.suspended_at is None:
            extra = upgrade_difference(old_price, plan.price_kopecks, self.today())
        return PlanChangePreview(current.plan if current else None, plan, extra, plan.price_kopecks)

    @records_refusals("plan.change")
    async def change_plan(
        self, actor: Actor, project_name: str, plan_code: str, *, conn: Connection | None = None
    ) -> ProjectPlan:
        """Move the project to the current version of `plan_code`, at once. An upgrade on a day
        already charged at the old price pays the difference for that day. A plan with less
        memory, disk or services is taken only when what the project uses now fits it (else a
        ConflictError lists each thing that does not, and nothing changes). The running
        containers and the project's cgroup get the new limits at once, without a rebuild."""
        actor.require("deploy")
        if not actor.is_operator:  # an admin's `admin` token acts for the operators
            actor.refuse_token("change a plan")  # it spends the account's money
        project = await self._projects.resolve(actor, project_name, conn=conn)
        # Measured before any lock (docker stats take a second or two); only what an upload
        # can change meanwhile is measured again under the lock.
        measured = await self._measure_if_shrinking(project, plan_code, conn)
        today = self.today()
        async with transaction(self._pool, conn) as tx:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", CHARGE_LOCK)
            # The project's row: the lock an upload records its version under (and a deploy
            # is queued under), so none lands between the fit check and the change.
            if await self._projects.lock(tx, project.id) is None:
                raise NotFoundError(f"The project {project.name!r} was deleted meanwhile.")
            plan = await plans.current(tx, plan_code)
            if plan is None:
                raise NotFoundError(f"No plan {plan_code!r}.")
            current = await _load(tx, project.id, lock=True)
            if measured is not None:
                await self._check_fits(tx, project, measured, plan)
            if current is None:
                await assign(tx, project, plan, today)
            elif current.plan.id != plan.id:
                await self._switch(tx, actor, current, plan, today)
            changed = await _load(tx, project.id)
            if current is None or current.plan.id != plan.id:
                await audit.record(
                    tx,
                    actor,
                    "plan.change",
                    audit.Target("project", project.name, project.id, project.user_id),
                    metadata={
                        "from": current.plan.code if current else None,
                        "to": plan.code,
                        "to_version": plan.version,
                    },
                )
        assert changed is not None
        await self._apply(project, changed.plan)
        return changed

    async def disk_limit_in(self, conn: Connection, project_id: int) -> tuple[str, int] | None:
        """(plan name, disk bytes) of the project's plan, on the caller's connection (an
        upload recording its version under the project's lock); None without a plan."""
        current = await _load(conn, project_id)
        if current is None:
            return None
        return current.plan.name, current.plan.disk_mb * MiB

    async def _measure_if_shrinking(
        self, project: Project, plan_code: str, conn: Connection | None
    ) -> ProjectUsage | None:
        """The project's usage against its plan now, if `plan_code` gives less of something
        usage holds (else None: nothing to check). A usage that does not fit is refused
        here already; `_check_fits` decides again under the lock."""
        async with reading(self._pool, conn) as db:
            plan = await plans.current(db, plan_code)
            current = await _load(db, project.id)
        if plan is None:
            raise NotFoundError(f"No plan {plan_code!r}.")
        old = limits_for(current.plan) if current is not None else self._defaults
        if not shrinks(old, limits_for(plan)):
            return None
        usage = await self._meter.measure(project.id, project.name, old)
        _refuse_misfits(project, usage, plan)
        return usage

    async def _check_fits(
        self, tx: Connection, project: Project, measured: ProjectUsage, plan: Plan
    ) -> None:
        """Under the project's lock: the versions stored now (an upload may have landed since
        `measured`) with the volumes, memory and services measured, against `plan`."""
        busy = await self._jobs.in_progress(project.id, tx) if self._jobs is not None else None
        if busy is not None:  # it may have read the larger plan's limits and start with them
            raise ConflictError(
                f"Deployment #{busy} of {project.name} is in progress: change to a smaller plan"
                " once it has finished (or cancel it).",
                title="Plan not changed",
            )
        archives = await self._meter.archive_bytes(project.id, tx)
        disk = replace(measured.disk, used=archives + measured.volume_bytes)
        _refuse_misfits(project, replace(measured, disk=disk, archive_bytes=archives), plan)

    async def _apply(self, project: Project, plan: Plan) -> None:
        """The new limits on the running containers. A failure leaves them as they were until
        the next deployment (which always starts with its plan's limits): logged, not raised,
        since the plan (and its charge) did change."""
        runtime = self._meter.runtime
        if runtime is None:
            return
        try:
            await runtime.apply_limits(project.name, limits_for(plan))
        except PanelError as error:
            log.warning("project %s: the new plan's limits wait for its next deployment: %s",
                        project.name, error.message)  # fmt: skip

    async def _switch(
        self, tx: Connection, actor: Actor, current: ProjectPlan, plan: Plan, today: date
    ) -> None:
        # A project leaving the free plan starts paying today, not on its creation day.
        billed_from = max(current.billed_from, today) if current.plan.is_free else None
        try:
            async with tx.transaction():
                await tx.execute(
                    "UPDATE project_plans SET plan_id = $2, price_kopecks = $3, since = now(),"
                    " billed_from = coalesce($4, billed_from) WHERE project_id = $1",
                    current.project_id, plan.id, plan.price_kopecks, billed_from,
                )  # fmt: skip
        except asyncpg.UniqueViolationError as error:
            raise ConflictError(ONE_FREE) from error
        charged = await ledger.by_key(tx, f"charge:{current.project_id}:{today}")
        difference = upgrade_difference(current.plan.price_kopecks, plan.price_kopecks, today)
        if charged is not None and difference > 0 and current.suspended_at is None:
            await ledger.post(
                tx,
                NewEntry(
                    current.user_id,
                    "charge",
                    -difference,
                    f"upgrade:{current.project_id}:{today}:{plan.id}",
                    actor.label,
                    f"upgrade to {plan.name} (v{plan.version}) for the rest of {today}",
                    current.project_id,
                    today,
                    plan.id,
                ),
                by=actor,
            )


def _refuse_misfits(project: Project, usage: ProjectUsage, plan: Plan) -> None:
    problems = misfits(usage, limits_for(plan))
    if problems:
        raise ConflictError(
            f"{project.name} does not fit the {plan.name} plan now, so its plan was not"
            " changed:\n- " + "\n- ".join(problems),
            title="Plan not changed",
        )


# --- suspension for non-payment (core.billing.suspension decides when) ----------------------


@dataclass(frozen=True, order=True)
class Suspended:
    project_id: int
    stopped_before: bool


async def suspend_paid(conn: Connection, user_id: int, stopped: set[int]) -> list[int]:
    """Suspend every paid project of the account not suspended yet (free ones never are);
    `stopped`: the projects its owner had stopped. The projects suspended now."""
    rows = await conn.fetch(
        "UPDATE project_plans SET suspended_at = now(),"
        " stopped_before_suspension = project_id = any($2::bigint[])"
        " WHERE user_id = $1 AND suspended_at IS NULL AND price_kopecks > 0"
        " RETURNING project_id",
        user_id,
        list(stopped),
    )
    return sorted(int(row["project_id"]) for row in rows)


async def resume_all(conn: Connection, user_id: int) -> list[Suspended]:
    """End the suspension of every project of the account; the projects resumed."""
    rows = await conn.fetch(
        "UPDATE project_plans SET suspended_at = NULL"
        " WHERE user_id = $1 AND suspended_at IS NOT NULL"
        " RETURNING project_id, stopped_before_suspension",
        user_id,
    )
    return sorted(Suspended(row["project_id"], row["stopped_before_suspension"]) for row in rows)


async def suspension_of(conn: Connection, project_id: int) -> tuple[datetime | None, bool] | None:
    """(suspended since, on a free plan) for the project; None without a plan."""
    row = await conn.fetchrow(
        "SELECT suspended_at, is_free FROM project_plans WHERE project_id = $1", project_id
    )
    return None if row is None else (row["suspended_at"], row["is_free"])


async def stopped_before_suspension(conn: Connection, project_id: int) -> bool | None:
    """Whether the owner had stopped the project before its suspension for non-payment; None:
    not suspended (an admin's hold taken meanwhile keeps the owner's own choice)."""
    row = await conn.fetchrow(
        "SELECT stopped_before_suspension FROM project_plans"
        " WHERE project_id = $1 AND suspended_at IS NOT NULL",
        project_id,
    )
    return None if row is None else bool(row["stopped_before_suspension"])


async def keep_stopped_before(conn: Connection, project_id: int, stopped: bool) -> None:
    """An admin's hold lifted while this suspension holds: the resume that ends it starts the
    project unless its owner had stopped it (the hold's stop made it look stopped)."""
    await conn.execute(
        "UPDATE project_plans SET stopped_before_suspension = $2"
        " WHERE project_id = $1 AND suspended_at IS NOT NULL",
        project_id,
        stopped,
    )


async def paid_project_ids(conn: Connection, user_id: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT project_id FROM project_plans WHERE user_id = $1 AND price_kopecks > 0"
        " ORDER BY project_id",
        user_id,
    )
    return [int(row["project_id"]) for row in rows]


async def with_running_paid(conn: Connection, user_ids: list[int]) -> list[int]:
    """Those of `user_ids` that have a paid project not suspended (what a suspension acts on)."""
    rows = await conn.fetch(
        "SELECT DISTINCT user_id FROM project_plans WHERE user_id = any($1::bigint[])"
        " AND price_kopecks > 0 AND suspended_at IS NULL ORDER BY user_id",
        user_ids,
    )
    return [int(row["user_id"]) for row in rows]


async def daily_spend_with_suspended(conn: Connection, user_id: int, day: date) -> int:
    """What the account's paid projects cost on `day` (suspended ones included: the spend a
    resume brings back)."""
    prices = await conn.fetch(
        "SELECT price_kopecks FROM project_plans WHERE user_id = $1 AND price_kopecks > 0",
        user_id,
    )
    return sum(daily_share(row["price_kopecks"], day) for row in prices)
