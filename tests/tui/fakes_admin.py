"""A fixed admin service for the admin views' Pilot and snapshot tests: rows in memory,
filtered and paged like core/admin does in SQL, the actor's rights checked by the real
`Actor` (an operator is refused every change). The real service is tested in
tests/integration/test_admin_views.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import cast

from core.actor import Actor
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
    months_back,
)
from core.admin.service import Viewing, audit_filter
from core.admin.system import Check
from core.audit.entries import AuditEvent, Outcome
from core.billing.invoices import Invoice, InvoiceLine
from core.billing.plans import Plan, PlanSpec
from core.billing.usage import ProjectUsage
from core.errors import NotFoundError
from core.identity.sessions import OpenSession
from core.panel import Panel
from tests.tui.fakes import (
    ALICE,
    ALICE_KEYS,
    SHOP_APP_LOG,
    SHOP_BUILD_LOG,
    FakeDeployments,
    FakePanel,
    deployment,
)
from tests.tui.fakes_billing import usage_of
from tests.tui.fakes_tokens import ALICE_TOKENS
from tui.admin.app import AdminApp

SINCE = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def user_row(name: str, *, role: str = "user", balance: int = 0, projects: int = 1) -> UserRow:
    return UserRow(
        id=abs(hash(name)) % 10_000,
        username=name,
        email=f"{name}@example.com",
        role=role,
        created_at=SINCE,
        blocked=False,
        balance_kopecks=balance,
        projects=projects,
        keys=1,
        sessions=0,
    )


def project_row(name: str, owner: str, state: str = "running", plan: str = "host-1") -> ProjectRow:
    return ProjectRow(
        id=abs(hash(name)) % 10_000,
        name=name,
        user_id=abs(hash(owner)) % 10_000,
        username=owner,
        state=state,
        stopped=state == "stopped",
        suspended=False,
        plan=f"{plan} v1",
        cpu_millicores=2000,
        ram_mb=8192,
        disk_mb=5120,
        max_services=10,
        price_kopecks=100_000,
        last_deployment_id=7,
        last_deployment_state="running",
        last_deployment_at=SINCE,
    )


USERS = [
    user_row("alice", role="admin", balance=150_000, projects=2),
    user_row("bob", balance=-2_550),
    user_row("carol", role="operator", projects=0),
    user_row("dave", balance=99_990, projects=3),
]
PROJECTS = [
    project_row("blog", "alice"),
    replace(project_row("docs", "dave", "stopped"), held=True),  # suspended by an admin
    project_row("shop", "bob", "failed", "host-0"),
    project_row("wiki", "alice", "deploying"),
]
PLANS = [
    PlanRow(Plan(1, "free", 1, "Free", 0, 250, 256, 512, 2, 256, False), 12),
    PlanRow(Plan(2, "host-0", 1, "Host-0", 50_000, 1000, 4096, 1024, 5, 512, False), 3),
    PlanRow(Plan(3, "host-1", 2, "Host-1", 100_000, 2000, 8192, 5120, 10, 1024, False), 2),
    PlanRow(Plan(4, "host-1", 1, "Host-1", 90_000, 2000, 8192, 5120, 10, 1024, True), 1),
]

CHECKS = [
    Check("PostgreSQL", True, "15.18", 0.4, "pool of 4 connections"),
    Check("Redis", True, "7.0.15", 0.2, ""),
    Check("Object storage", True, "", 3.1, "S3 http://127.0.0.1:9000"),
    Check("dockerd", False, "", None, "no answer within 3 s"),
    Check("nginx", True, "1.22.1", 2.0, "master pid 4242"),
    Check("Deployments queue", True, "", 0.9, "3 queued, 1 being worked on"),
    Check(
        "ghst serve web-1:4101",
        True,
        "",
        None,
        "12 sessions · 14 connections · up 03-01 08:00",
    ),
    Check(
        "ghst serve web-1:4102",
        True,
        "",
        None,
        "9 sessions · 9 connections · up 03-01 08:00",
    ),
]

DEPLOYMENTS = [
    DeploymentRow(12, "wiki", "alice", "deploy", "deploy", "building", "v3-wiki.zip", "worker-1",
                  None, 1, False, SINCE),
    DeploymentRow(11, "shop", "bob", "deploy", "redeploy", "queued", "v2-shop.tar.gz", None,
                  None, 0, False, SINCE),
    DeploymentRow(9, "docs", "dave", "stop", "deploy", "working", "", "worker-2", None, 1,
                  True, SINCE),
]  # fmt: skip

# Twelve months back from March 2025, newest first; the older half had nothing.
REVENUE = [
    RevenueRow(months_back(date(2025, 3, 1), back), kopecks, entries, paid)
    for back, (kopecks, entries, paid) in enumerate(
        [(412_300, 93, 250_000), (1_180_000, 840, 1_500_000), (1_090_500, 812, 900_000),
         (640_000, 455, 1_000_000), (120_000, 62, 300_000), (0, 0, 50_000)]
        + [(0, 0, 0)] * 6
    )
]  # fmt: skip


def invoice_of(number: int, owner: str, month: date, amount: int) -> Invoice:
    line = InvoiceLine(1, "Hosting", f"{owner}-site", "Host-1", 28, amount)
    return Invoice(number, number, abs(hash(owner)) % 10_000, month, "RUB", amount,
                   SINCE, (line,))  # fmt: skip


INVOICES = [  # newest number first
    (invoice_of(4, "dave", date(2025, 2, 1), 100_000), "dave"),
    (invoice_of(3, "bob", date(2025, 2, 1), 50_000), "bob"),
    (invoice_of(2, "alice", date(2025, 2, 1), 90_000), "alice"),
    (invoice_of(1, "bob", date(2025, 1, 1), 48_390), "bob"),
]


def audit_row(
    entry_id: int,
    actor: str,
    action: str,
    target: str | None = None,
    outcome: Outcome = "ok",
    origin: str = "dashboard",
) -> AuditEvent:
    return AuditEvent(
        id=entry_id,
        at=SINCE + timedelta(minutes=entry_id),
        actor_kind="admin" if actor == "alice" else "user",
        actor_user_id=None,
        actor_label=actor,
        token_id=None,
        origin=origin,
        action=action,
        target_kind=None
        if target is None
        else "account"
        if action.startswith("account")
        else "project",
        target_id=None,
        target_name=target,
        owner_id=None,
        outcome=outcome,
        source_address="203.0.113.7",
        request_id=None,
        metadata={},
    )


# Newest first, as core lists them.
AUDIT = [
    audit_row(6, "alice", "account.block", "bob", origin="admin"),
    audit_row(5, "bob", "project.delete", "blog", "refused"),
    audit_row(4, "bob", "deploy", "shop"),
    audit_row(3, "dave", "login", outcome="failed", origin="ssh"),
    audit_row(2, "dave", "login", origin="ssh"),
    audit_row(1, "bob", "project.create", "shop"),
]


class FakeStaffLogs:
    """core.admin.logs over fixed deployments: any account's logs, for staff only."""

    def __init__(self) -> None:
        build = deployment(7, "v2-shop.tar.gz", "failed", SINCE, 71, project_name="shop",
                           error="The app did not answer on port 8080 within 60 s.")  # fmt: skip
        live = deployment(6, "v1-shop.tar.gz", "running", SINCE, 9, project_name="shop")
        self._deployments = FakeDeployments({"shop": [build, live]}, {7: SHOP_BUILD_LOG})
        self.app_log = list(SHOP_APP_LOG)

    async def get(self, actor: Actor, project: str, deployment_id: int) -> object:
        actor.require_staff()
        return await self._deployments.get(actor, project, deployment_id)

    async def status(self, actor: Actor, project: str) -> object:
        actor.require_staff()
        return await self._deployments.status(actor, project)

    async def build_log(
        self, actor: Actor, project: str, deployment_id: int, offset: int = 0
    ) -> tuple[str, int]:
        actor.require_staff()
        return await self._deployments.build_log(actor, project, deployment_id, offset)

    async def runtime_logs(self, actor: Actor, project: str, tail: int = 200) -> AsyncIterator[str]:
        actor.require_staff()
        self._deployments._history(project)
        for line in self.app_log[-tail:]:
            yield line


@dataclass
class FakeAdmin:
    users_rows: list[UserRow] = field(default_factory=lambda: list(USERS))
    project_rows: list[ProjectRow] = field(default_factory=lambda: list(PROJECTS))
    audit_rows: list[AuditEvent] = field(default_factory=lambda: list(AUDIT))
    plan_rows: list[PlanRow] = field(default_factory=lambda: list(PLANS))
    # (action, target, detail) of every change made, in order.
    done: list[tuple[str, str, str]] = field(default_factory=list)
    logs: FakeStaffLogs = field(default_factory=FakeStaffLogs)

    async def view_as(self, actor: Actor, username: str) -> Viewing:
        """As core: admins only; the viewed user is ALICE's data under `username`."""
        user = replace(ALICE, id=2, username=username, email=f"{username}@example.com")
        return Viewing(user, Actor.viewing_as(actor, user))

    async def user_detail(self, actor: Actor, username: str) -> UserDetail:
        """A fixed account: its row, the projects it owns, a login, ALICE's keys and tokens."""
        actor.require_staff()
        row = next((u for u in self.users_rows if u.username == username), None)
        if row is None:
            raise NotFoundError(f"No account named {username!r}.")
        login = OpenSession("203.0.113.7", SINCE, "publickey", SINCE + timedelta(days=30))
        return UserDetail(
            user=row,
            projects=[p for p in self.project_rows if p.username == username],
            sessions=[login],
            keys=list(ALICE_KEYS[:2]),
            tokens=list(ALICE_TOKENS),
        )

    async def project_usage(self, actor: Actor, project: str) -> ProjectUsage:
        actor.require_staff()
        return usage_of(project)

    async def users(
        self, actor: Actor, search: str = "", *, after: str | None = None, limit: int = 50
    ) -> list[UserRow]:
        actor.require_staff()
        rows = [u for u in self.users_rows if u.username.startswith(search.strip().lower())]
        return [u for u in rows if after is None or u.username > after][:limit]

    async def projects(
        self,
        actor: Actor,
        found: ProjectFilter | None = None,
        *,
        username: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[ProjectRow]:
        actor.require_staff()
        found = found or ProjectFilter()
        rows = [
            p
            for p in self.project_rows
            if p.name.startswith(found.name_prefix)
            and (found.state is None or p.state == found.state)
            and (username is None or p.username == username)
            and (found.plan_code is None or (p.plan or "").startswith(found.plan_code + " "))
        ]
        return [p for p in rows if after is None or p.name > after][:limit]

    async def audit(
        self, actor: Actor, search: str = "", *, before_id: int | None = None, limit: int = 50
    ) -> list[AuditEvent]:
        actor.require_staff()
        found, name = audit_filter(search, SINCE + timedelta(days=1))
        return [
            e
            for e in self.audit_rows
            if (before_id is None or e.id < before_id)
            and (name is None or e.actor_label == name)
            and (
                found.action is None
                or e.action.split(".")[0] == found.action
                or e.action == found.action
            )
            and (found.target is None or e.target_name == found.target)
            and (found.outcome is None or e.outcome == found.outcome)
            and (found.since is None or e.at >= found.since)
            and any(
                t.startswith(found.text) for t in (e.action, e.target_name or "", e.actor_label)
            )
        ][:limit]

    async def plans(self, actor: Actor) -> list[PlanRow]:
        actor.require_staff()
        return list(self.plan_rows)

    async def create_plan(self, actor: Actor, spec: PlanSpec) -> Plan:
        actor.require_admin()
        spec = spec.checked()
        version = 1 + max(
            (p.plan.version for p in self.plan_rows if p.plan.code == spec.code), default=0
        )
        plan = Plan(len(self.plan_rows) + 1, spec.code, version, spec.name,
                    spec.price_kopecks, spec.cpu_millicores, spec.ram_mb, spec.disk_mb,
                    spec.max_services, spec.pids_limit, False)  # fmt: skip
        self.plan_rows.insert(0, PlanRow(plan, 0))
        self.done.append(("plan.create", spec.code, f"v{version} {spec.pids_limit} pids"))
        return plan

    async def retire_plan(self, actor: Actor, code: str) -> int:
        actor.require_admin()
        retiring = [p for p in self.plan_rows if p.plan.code == code and not p.plan.retired]
        self.plan_rows = [
            replace(p, plan=replace(p.plan, retired=True)) if p in retiring else p
            for p in self.plan_rows
        ]
        self.done.append(("plan.retire", code, ""))
        return len(retiring)

    async def deployments(
        self,
        actor: Actor,
        *,
        active_only: bool = True,
        state: str | None = None,
        project_prefix: str = "",
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[DeploymentRow]:
        actor.require_staff()
        return [
            d
            for d in DEPLOYMENTS
            if d.project.startswith(project_prefix) and (state is None or d.state == state)
        ][:limit]

    async def cancel(self, actor: Actor, project: str, deployment_id: int) -> None:
        await self._project_action(actor, "cancel", project, str(deployment_id))

    async def requeue(self, actor: Actor, project: str, deployment_id: int) -> None:
        await self._project_action(actor, "requeue", project, str(deployment_id))

    async def arrears(
        self, actor: Actor, search: str = "", *, after: str | None = None, limit: int = 50
    ) -> list[ArrearsRow]:
        actor.require_staff()
        return [
            ArrearsRow(u.id, u.username, u.balance_kopecks, SINCE, 1)
            for u in self.users_rows
            if u.balance_kopecks <= 0 and u.username.startswith(search)
        ]

    async def charges_today(self, actor: Actor) -> tuple[int, int]:
        actor.require_staff()
        return 412, 1_234_500

    async def revenue(self, actor: Actor, months: int = 12) -> list[RevenueRow]:
        actor.require_staff()
        return REVENUE[:months]

    async def invoices(
        self,
        actor: Actor,
        username_prefix: str = "",
        *,
        before_number: int | None = None,
        limit: int = 50,
    ) -> list[InvoiceRow]:
        actor.require_staff()
        return [
            InvoiceRow(i.id, i.number, i.user_id, owner, i.month, i.currency, i.total, i.issued_at)
            for i, owner in INVOICES
            if owner.startswith(username_prefix.strip().lower())
            and (before_number is None or i.number < before_number)
        ][:limit]

    async def invoice(self, actor: Actor, number: int) -> Invoice:
        actor.require_staff()
        for found, _ in INVOICES:
            if found.number == number:
                return found
        raise NotFoundError(f"No invoice number {number}.")

    async def system(self, actor: Actor) -> list[Check]:
        actor.require_staff()
        return list(CHECKS)

    def _user(self, username: str) -> UserRow:
        for row in self.users_rows:
            if row.username == username:
                return row
        raise NotFoundError(f"No account named {username!r}.")

    async def _change_user(
        self, actor: Actor, action: str, username: str, **changes: object
    ) -> None:
        actor.require_admin()
        row = self._user(username)
        self.users_rows[self.users_rows.index(row)] = replace(row, **changes)  # type: ignore[arg-type]
        self.done.append((action, username, ""))

    async def block(self, actor: Actor, username: str) -> None:
        await self._change_user(actor, "block", username, blocked=True)

    async def unblock(self, actor: Actor, username: str) -> None:
        await self._change_user(actor, "unblock", username, blocked=False)

    async def set_role(self, actor: Actor, username: str, role: str) -> None:
        await self._change_user(actor, "role", username, role=role)

    async def adjust_balance(self, actor: Actor, username: str, amount: int, reason: str) -> None:
        actor.require_admin()
        row = self._user(username)
        self.users_rows[self.users_rows.index(row)] = replace(
            row, balance_kopecks=row.balance_kopecks + amount
        )
        self.done.append(("adjust", username, f"{amount} {reason}"))

    async def grant_promised_payment(self, actor: Actor, username: str) -> None:
        actor.require_admin()
        self.done.append(("promise", self._user(username).username, ""))

    async def _project_action(self, actor: Actor, action: str, name: str, detail: str = "") -> None:
        actor.require_admin()
        if not any(p.name == name for p in self.project_rows):
            raise NotFoundError(f"No project named {name!r}.")
        self.done.append((action, name, detail))

    async def stop(self, actor: Actor, name: str) -> None:
        await self._project_action(actor, "stop", name)

    async def start(self, actor: Actor, name: str) -> None:
        await self._project_action(actor, "start", name)

    async def change_plan(self, actor: Actor, name: str, code: str) -> None:
        await self._project_action(actor, "plan", name, code)

    async def suspend(self, actor: Actor, name: str, reason: str = "") -> None:
        await self._project_action(actor, "suspend", name, reason)
        self._set_project(name, held=True)

    async def resume(self, actor: Actor, name: str) -> bool:
        await self._project_action(actor, "resume", name)
        self._set_project(name, held=False)
        return True

    def _set_project(self, name: str, **changes: object) -> None:
        rows = self.project_rows
        self.project_rows = [replace(p, **changes) if p.name == name else p for p in rows]  # type: ignore[arg-type]

    async def delete_project(self, actor: Actor, name: str, confirmation: str) -> None:
        await self._project_action(actor, "delete", name, confirmation)
        self.project_rows = [p for p in self.project_rows if p.name != name]


def admin_app(admin: FakeAdmin | None = None, operator: Actor | None = None) -> AdminApp:
    """`ghst admin` over the fixed rows (as the system, or as `operator`)."""
    panel = FakePanel(admin=admin or FakeAdmin())
    return AdminApp(cast(Panel, panel), operator=operator)
