"""What the admin app calls: the read models for operators and admins, and admins' changes.

Reads need an admin or an operator (`Actor.require_staff`). Every change needs an admin
(`Actor.require_admin`, checked here first) and then goes through the service that owns the
data, with the same actor, so that service's own rules and checks apply as they do for the
dashboard and `ghst`: blocking ends the user's sessions, a plan change checks the project's
usage, a credit is a ledger entry with its reason, a delete waits for a worker. A refused
attempt (a user, a user's token, an operator changing something) is audited as
`admin.<method>` before the refusal is raised, whichever front end made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import get_args

from core.actor import Actor
from core.admin import read_models
from core.admin.holds import AdminHold, AdminHolds
from core.admin.logs import StaffLogs
from core.admin.processes import PanelProcesses
from core.admin.read_models import (
    ArrearsRow,
    DeploymentRow,
    InvoiceRow,
    PlanRow,
    ProjectFilter,
    ProjectRow,
    RevenueRow,
    UserDetail,
    UserRow,
)
from core.admin.system import Check, SystemChecks
from core.audit import entries
from core.audit.entries import AuditEvent, AuditFilter, Outcome
from core.audit.service import records_gate_refusals, refusals
from core.billing import invoices
from core.billing.balances import BalanceService
from core.billing.invoices import Invoice
from core.billing.ledger import Entry
from core.billing.plans import Plan, PlanService, PlanSpec
from core.billing.promised import Promise, PromisedPayments
from core.billing.subscriptions import ProjectPlan, SubscriptionService
from core.billing.usage import ProjectUsage
from core.db.pool import Pool
from core.db.unit import reading, transaction
from core.deploy.model import Deployment
from core.deploy.service import DeploymentService
from core.errors import NotFoundError, UnavailableError, ValidationError
from core.identity.accounts import AccountService, User
from core.projects.service import Project

# `since:` durations: a number and a unit (`90s`, `30m`, `2h`, `7d`).
SINCE = re.compile(r"^(\d{1,6})([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def audit_filter(text: str, now: datetime) -> tuple[AuditFilter, str | None]:
    """The `:audit` view's `/` words (`since:2h actor:bob action:login target:shop
    outcome:refused`, any other word is free text), and the actor's name if one was given
    (looked up by the service: an account's id, else the label as recorded)."""
    found, actor_name, free = AuditFilter(), None, []
    for word in text.split():
        key, colon, value = word.partition(":")
        key = key.lower()
        if not colon or not value or key not in ("since", "actor", "action", "target", "outcome"):
            free.append(word)
        elif key == "since":
            match = SINCE.match(value.lower())
            if match is None:
                raise ValidationError(
                    f"since: is a number and s, m, h or d (2h), not {value[:20]!r}."
                )
            amount, unit = match.groups()
            found = replace(found, since=now - timedelta(**{UNITS[unit]: int(amount)}))
        elif key == "actor":
            actor_name = value
        elif key == "action":
            found = replace(found, action=value.lower())
        elif key == "target":
            found = replace(found, target=value)
        else:
            outcomes: tuple[Outcome, ...] = get_args(Outcome)
            outcome = next((o for o in outcomes if o == value.lower()), None)
            if outcome is None:
                raise ValidationError(f"An outcome is one of {', '.join(outcomes)}.")
            found = replace(found, outcome=outcome)
    return replace(found, text=" ".join(free)), actor_name


# The gates of every method below: a refusal is audited as `admin.<method>` (capped like every
# refused attempt), whether it came from the admin app, a command or a token.
def staff_only(actor: Actor) -> None:
    actor.require_staff()


def admins_only(actor: Actor) -> None:
    actor.require_admin()


@dataclass(frozen=True)
class Viewing:
    """An admin looking at `user`'s own dashboard, through `actor` (`Actor.viewing_as`)."""

    user: User
    actor: Actor


class AdminService:
    def __init__(
        self,
        pool: Pool,
        *,
        accounts: AccountService,
        subscriptions: SubscriptionService,
        balances: BalanceService,
        promised: PromisedPayments,
        deployments: DeploymentService,
        system: SystemChecks | None = None,
        plans: PlanService | None = None,
        holds: AdminHolds | None = None,
        processes: PanelProcesses | None = None,
    ) -> None:
        self._pool = pool
        self._accounts = accounts
        self._subscriptions = subscriptions
        self._balances = balances
        self._promised = promised
        self._deployments = deployments
        self._system = system
        self._plans = plans
        self._holds = holds
        self._processes = processes
        # Build and runtime logs of every account's projects, operators included.
        self.logs = StaffLogs(deployments, pool)

    # --- reads: admins and operators -----------------------------------------------------

    @records_gate_refusals("admin.users", staff_only)
    async def users(
        self,
        actor: Actor,
        search: str = "",
        *,
        after: str | None = None,
        limit: int = read_models.PAGE_SIZE,
    ) -> list[UserRow]:
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.users_page(conn, search, after=after, limit=limit)

    @records_gate_refusals("admin.user", staff_only, "account")
    async def user(self, actor: Actor, username: str) -> UserRow:
        actor.require_staff()
        async with reading(self._pool) as conn:
            found = await read_models.user_by_name(conn, username.strip().lower())
        if found is None:
            raise NotFoundError(f"No account named {username[:40]!r}.")
        return found

    @records_gate_refusals("admin.projects", staff_only)
    async def projects(
        self,
        actor: Actor,
        found: ProjectFilter | None = None,
        *,
        username: str | None = None,
        after: str | None = None,
        limit: int = read_models.PAGE_SIZE,
    ) -> list[ProjectRow]:
        """A page of projects; `username` narrows to one owner's (none such: no rows)."""
        actor.require_staff()
        found = found or ProjectFilter()
        if found.state is not None and found.state not in read_models.PROJECT_STATES:
            raise ValidationError(
                f"A state is one of {', '.join(read_models.PROJECT_STATES)}, not {found.state!r}."
            )
        async with reading(self._pool) as conn:
            if username is not None:
                owner = await read_models.user_by_name(conn, username.strip().lower())
                if owner is None:
                    return []
                found = ProjectFilter(found.name_prefix, found.state, owner.id, found.plan_code)
            return await read_models.projects_page(conn, found, after=after, limit=limit)

    @records_gate_refusals("admin.project", staff_only, "project")
    async def project(self, actor: Actor, name: str) -> ProjectRow:
        actor.require_staff()
        async with reading(self._pool) as conn:
            found = await read_models.project_by_name(conn, name.strip().lower())
        if found is None:
            raise NotFoundError(f"No project named {name[:40]!r}.")
        return found

    @records_gate_refusals("admin.plans", staff_only)
    async def plans(self, actor: Actor) -> list[PlanRow]:
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.plans(conn)

    @records_gate_refusals("admin.audit", staff_only)
    async def audit(
        self,
        actor: Actor,
        search: str = "",
        *,
        before_id: int | None = None,
        limit: int = read_models.PAGE_SIZE,
        now: datetime | None = None,
    ) -> list[AuditEvent]:
        """Every account's audit entries matching the `/` words, newest first."""
        actor.require_staff()
        found, actor_name = audit_filter(search, now or datetime.now(UTC))
        async with reading(self._pool) as conn:
            if actor_name is not None:
                account = await read_models.user_by_name(conn, actor_name.lower())
                found = (
                    replace(found, actor_id=account.id)
                    if account is not None
                    else replace(found, actor_label=actor_name)
                )
            return await entries.search(
                conn, found, before_id=before_id, limit=max(1, min(limit, 200))
            )

    @records_gate_refusals("admin.deployments", staff_only)
    async def deployments(
        self,
        actor: Actor,
        *,
        active_only: bool = True,
        state: str | None = None,
        project_prefix: str = "",
        before_id: int | None = None,
        limit: int = read_models.PAGE_SIZE,
    ) -> list[DeploymentRow]:
        """The queue and the running jobs across workers (or every deployment), newest first."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.deployments_page(
                conn,
                active_only=active_only,
                state=state,
                project_prefix=project_prefix,
                before_id=before_id,
                limit=limit,
            )

    @records_gate_refusals("admin.arrears", staff_only)
    async def arrears(
        self,
        actor: Actor,
        search: str = "",
        *,
        after: str | None = None,
        limit: int = read_models.PAGE_SIZE,
    ) -> list[ArrearsRow]:
        """Accounts at or below zero, with their suspended projects."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.arrears_page(conn, search, after=after, limit=limit)

    @records_gate_refusals("admin.charges_today", staff_only)
    async def charges_today(self, actor: Actor) -> tuple[int, int]:
        """(entries, kopecks) charged for today's billing day so far."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.charges_on(conn, self._subscriptions.today())

    @records_gate_refusals("admin.revenue", staff_only)
    async def revenue(self, actor: Actor, months: int = 12) -> list[RevenueRow]:
        """Charges and payments per calendar month, the last `months`, newest first."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.revenue(
                conn,
                self._subscriptions.today(),
                self._subscriptions.time_zone,
                max(1, min(months, 120)),
            )

    @records_gate_refusals("admin.invoices", staff_only)
    async def invoices(
        self,
        actor: Actor,
        username_prefix: str = "",
        *,
        before_number: int | None = None,
        limit: int = read_models.PAGE_SIZE,
    ) -> list[InvoiceRow]:
        """Every account's invoices, newest first; a username prefix filters."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            return await read_models.invoices_page(
                conn, username_prefix, before_number=before_number, limit=limit
            )

    @records_gate_refusals("admin.invoice", staff_only)
    async def invoice(self, actor: Actor, number: int) -> Invoice:
        """One invoice, as its owner reads it (`core.billing.invoice_render`)."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            found = await invoices.by_number(conn, number)
        if found is None:
            raise NotFoundError(f"No invoice number {number}.")
        return found

    @records_gate_refusals("admin.system", staff_only)
    async def system(self, actor: Actor) -> list[Check]:
        """The outside systems, disks and queue, checked now (each bounded in time)."""
        actor.require_staff()
        if self._system is None:
            raise UnavailableError("This panel process has no system checks.")
        checks = await self._system.run()
        return checks + await self.processes(actor)

    @records_gate_refusals("admin.processes", staff_only)
    async def processes(self, actor: Actor) -> list[Check]:
        """Each serving process alive (its last beat within `processes.STALE`): its open
        dashboard sessions and SSH connections, and since when it serves."""
        actor.require_staff()
        if self._processes is None:
            return []
        return [
            Check(
                f"ghst serve {found.host}:{found.pid}",
                True,
                "",
                None,
                # Month, day and UTC time: what fits the table's 48-column cells.
                f"{found.sessions} sessions · {found.connections} connections"
                f" · up {found.started_at:%m-%d %H:%M}",
            )
            for found in await self._processes.alive()
        ]

    # --- changes: admins only, through the owners' services ------------------------------

    @records_gate_refusals("admin.block", admins_only, "account")
    async def block(self, actor: Actor, username: str) -> User:
        actor.require_admin()
        return await self._accounts.block(actor, username)

    @records_gate_refusals("admin.unblock", admins_only, "account")
    async def unblock(self, actor: Actor, username: str) -> User:
        actor.require_admin()
        return await self._accounts.unblock(actor, username)

    @records_gate_refusals("admin.set_role", admins_only, "account")
    async def set_role(self, actor: Actor, username: str, role: str) -> User:
        actor.require_admin()
        return await self._accounts.set_role(actor, username, role)

    @records_gate_refusals("admin.change_plan", admins_only, "project")
    async def change_plan(self, actor: Actor, project: str, plan_code: str) -> ProjectPlan:
        actor.require_admin()
        return await self._subscriptions.change_plan(actor, project, plan_code)

    @records_gate_refusals("admin.adjust_balance", admins_only, "account")
    async def adjust_balance(
        self, actor: Actor, username: str, amount_kopecks: int, reason: str
    ) -> Entry:
        """Credit (positive) or debit (negative) with a reason: one ledger entry."""
        actor.require_admin()
        target = await self.user(actor, username)
        return await self._balances.adjust(actor, target.id, amount_kopecks, reason)

    @records_gate_refusals("admin.grant_promised_payment", admins_only, "account")
    async def grant_promised_payment(self, actor: Actor, username: str) -> Promise:
        actor.require_admin()
        target = await self.user(actor, username)
        return await self._promised.take(actor, owner_id=target.id)

    @records_gate_refusals("admin.stop", admins_only, "project")
    async def stop(self, actor: Actor, project: str) -> Deployment:
        actor.require_admin()
        return await self._deployments.stop(actor, project)

    @records_gate_refusals("admin.start", admins_only, "project")
    async def start(self, actor: Actor, project: str) -> Deployment:
        actor.require_admin()
        return await self._deployments.start(actor, project)

    @records_gate_refusals("admin.cancel", admins_only, "project")
    async def cancel(self, actor: Actor, project: str, deployment_id: int) -> Deployment:
        actor.require_admin()
        return await self._deployments.cancel(actor, project, deployment_id)

    @records_gate_refusals("admin.requeue", admins_only, "project")
    async def requeue(self, actor: Actor, project: str, deployment_id: int) -> Deployment:
        """Queue the same archive again (a deployment that failed or was cancelled)."""
        actor.require_admin()
        old = await self._deployments.get(actor, project, deployment_id)
        if old.active:
            raise ValidationError(f"Deployment #{old.id} is still {old.state}: nothing to requeue.")
        return await self._deployments.deploy(actor, project, old.archive_name)

    @records_gate_refusals("admin.delete_project", admins_only, "project")
    async def delete_project(self, actor: Actor, project: str, confirmation: str) -> Project:
        """Deleted once the project's name is typed again (`confirmation`)."""
        actor.require_admin()
        return await self._deployments.delete_project(actor, project, confirmation)

    @records_gate_refusals("admin.create_plan", admins_only, "plan")
    async def create_plan(self, actor: Actor, spec: PlanSpec) -> Plan:
        """A new version of `spec.code` (never an edit: projects keep the version they took)."""
        actor.require_admin()
        return await self._plan_service().add_version(actor, spec)

    @records_gate_refusals("admin.retire_plan", admins_only, "plan")
    async def retire_plan(self, actor: Actor, code: str) -> int:
        """No version of `code` is offered to new projects; returns how many were retired."""
        actor.require_admin()
        return await self._plan_service().retire(actor, code)

    @records_gate_refusals("admin.suspend", admins_only, "project")
    async def suspend(self, actor: Actor, project: str, reason: str = "") -> AdminHold:
        """An admin's suspension (not billing's: a top-up does not lift it). The holds check
        the admin themselves, so a refused attempt is audited."""
        return await self._hold_service().suspend(actor, project, reason)

    @records_gate_refusals("admin.resume", admins_only, "project")
    async def resume(self, actor: Actor, project: str) -> bool:
        """Lift an admin's suspension; billing's, if any, stays."""
        return await self._hold_service().resume(actor, project)

    def _hold_service(self) -> AdminHolds:
        if self._holds is None:
            raise UnavailableError("This panel process cannot suspend projects.")
        return self._holds

    def _plan_service(self) -> PlanService:
        if self._plans is None:
            raise UnavailableError("This panel process cannot change plans.")
        return self._plans

    # --- view as user: admins only, audited -------------------------------------------------

    async def view_as(self, actor: Actor, username: str) -> Viewing:
        """Start looking at `username`'s own dashboard, read-only: the actor the screens then
        use reads that account's rows and changes nothing. The start is audited
        (`admin.view_as`, the admin as actor, the account as target); a refusal too."""
        async with refusals(
            self._pool, actor, "admin.view_as", entries.Target("account", username[:40])
        ):
            actor.require_admin()
            user = await self._accounts.find_by_username(username.strip().lower())
            if user is None:
                raise NotFoundError(f"No account named {username[:40]!r}.")
            viewer = Actor.viewing_as(actor, user)
            async with transaction(self._pool) as tx:
                await entries.record(
                    tx,
                    actor,
                    "admin.view_as",
                    entries.Target("account", user.username, user.id, user.id),
                )
        return Viewing(user, viewer)

    # --- a user's details: admins and operators ---------------------------------------------

    @records_gate_refusals("admin.user_detail", staff_only, "account")
    async def user_detail(self, actor: Actor, username: str) -> UserDetail:
        """The account, its projects (state, plan), open sessions, keys and live tokens."""
        actor.require_staff()
        async with reading(self._pool) as conn:
            found = await read_models.user_detail(conn, username.strip().lower())
        if found is None:
            raise NotFoundError(f"No account named {username[:40]!r}.")
        return found

    @records_gate_refusals("admin.project_usage", staff_only, "project")
    async def project_usage(self, actor: Actor, project: str) -> ProjectUsage:
        """What a project uses against its plan, measured now (docker stats: a second or two;
        the detail screen asks once it shows). The billing screen's measurement, for staff."""
        actor.require_staff()
        return await self._subscriptions.usage(Actor.system("admin-usage"), project)
