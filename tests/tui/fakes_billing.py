"""Billing stand-ins for the snapshot tests (see fakes.py): fixed plans, balance, ledger and
invoices, and a plan change that the "core" may refuse with its message."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from core.actor import Actor
from core.billing.invoices import Invoice, InvoiceLine, parse_label
from core.billing.ledger import Entry
from core.billing.outlook import Outlook
from core.billing.plans import DEFAULT_PLANS, Plan
from core.billing.promised import Promise
from core.billing.proration import upgrade_difference
from core.billing.subscriptions import PlanChangePreview, ProjectPlan
from core.billing.usage import Meter, ProjectUsage
from core.errors import ConflictError, NotFoundError
from core.projects.service import Project, validate_project_name

TODAY = date(2026, 12, 10)
SINCE = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PLANS = [
    Plan(n, spec.code, 1, spec.name, spec.price_kopecks, spec.cpu_millicores, spec.ram_mb,
         spec.disk_mb, spec.max_services, spec.pids_limit, False)
    for n, spec in enumerate(DEFAULT_PLANS, start=1)
]  # fmt: skip
BY_CODE = {plan.code: plan for plan in PLANS}


def on(project_id: int, code: str) -> ProjectPlan:
    return ProjectPlan(project_id, 1, BY_CODE[code], SINCE, date(2026, 11, 1), None)


ALICE_PLANS = {
    "landing-page": on(1, "free"),
    "portfolio": on(2, "host-0"),
    "shop": on(3, "host-1"),
}


def entry(n: int, kind: str, amount: int, reason: str, day: date | None = None) -> Entry:
    made = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    return Entry(n, 1, kind, amount, f"key-{n}", "system:billing", reason, None, day, made)  # type: ignore[arg-type]


ALICE_LEDGER = [  # newest first, as core lists them
    *(
        entry(100 - d, "charge", -3_333, f"daily charge for 2026-12-{d:02d}", date(2026, 12, d))
        for d in range(9, 0, -1)
    ),
    entry(90, "topup", 300_000, "bank transfer"),
    entry(89, "adjustment", 5_000, "goodwill after an outage"),
    *(
        entry(88 - d, "charge", -1_666, f"daily charge for 2026-11-{d:02d}", date(2026, 11, d))
        for d in range(30, 20, -1)
    ),
]
NOVEMBER_INVOICE = Invoice(
    id=1,
    number=17,
    user_id=1,
    month=date(2026, 11, 1),
    currency="RUB",
    total=99_990 + 16_660 - 5_000,
    issued_at=datetime(2026, 12, 1, 0, 10, tzinfo=UTC),
    lines=(
        InvoiceLine(1, "Hosting", "portfolio", "Host-0", 10, 16_660),
        InvoiceLine(2, "Hosting", "shop", "Host-1", 30, 99_990),
        InvoiceLine(3, "Adjustment: goodwill after an outage", None, None, None, -5_000),
    ),
)


MiB = 1 << 20


def usage_of(project_name: str) -> ProjectUsage:
    """Fixed usage of a project on the free plan."""
    return ProjectUsage(
        project=project_name,
        plan="Free",
        cpu=Meter("CPU", 30, 250, "millicores"),
        ram=Meter("RAM", 200 * MiB, 256 * MiB, "bytes"),
        disk=Meter("Disk", 60 * MiB, 256 * MiB, "bytes"),
        services=Meter("Services", 1, 2, "services"),
        archive_bytes=40 * MiB,
        volume_bytes=20 * MiB,
    )


def usage_on(project_name: str, code: str, cpu: int, ram_mb: int, disk_mb: int) -> ProjectUsage:
    """Usage of a project on the plan `code`, for the billing screen's bars."""
    plan = BY_CODE[code]
    return ProjectUsage(
        project=project_name,
        plan=plan.name,
        cpu=Meter("CPU", cpu, plan.cpu_millicores, "millicores"),
        ram=Meter("RAM", ram_mb * MiB, plan.ram_mb * MiB, "bytes"),
        disk=Meter("Disk", disk_mb * MiB, plan.disk_mb * MiB, "bytes"),
        services=Meter("Services", 1, plan.max_services, "services"),
        archive_bytes=disk_mb * MiB,
        volume_bytes=0,
    )


ALICE_USAGE = {
    "landing-page": usage_on("landing-page", "free", 20, 90, 180),
    "portfolio": usage_on("portfolio", "host-0", 150, 1_200, 300),
    "shop": usage_on("shop", "host-1", 1_700, 7_000, 2_600),
}


@dataclass
class FakePlans:
    plans: list[Plan] = field(default_factory=lambda: list(PLANS))

    async def list(self, *, with_old: bool = False) -> list[Plan]:
        return self.plans


@dataclass
class FakeSubscriptions:
    plans: dict[str, ProjectPlan | None] = field(default_factory=lambda: dict(ALICE_PLANS))
    balance: int = 154_000
    # A change_plan refused by the core, with this message (None: changes are made).
    refusal: str | None = None
    changed: list[tuple[str, str]] = field(default_factory=list)
    has_free: bool = False  # the new-project dialog: whether the free plan is taken
    # Usage by project (the billing screen's bars); others: usage_of (the project screen's).
    usages: dict[str, ProjectUsage] = field(default_factory=dict)

    async def has_free_project(self, actor: Actor) -> bool:
        return self.has_free

    async def create_project(
        self, actor: Actor, name: str, plan_code: str = "free"
    ) -> tuple[Project, Plan]:
        name = validate_project_name(name.strip())  # the real rules and their messages
        raise ConflictError(f"The name {name!r} is taken. Please choose another one.")

    async def usage(self, actor: Actor, project_name: str) -> ProjectUsage:
        return self.usages.get(project_name) or usage_of(project_name)

    def today(self) -> date:
        return TODAY

    async def outlook(self, actor: Actor) -> Outlook:
        spend = sum(
            plan.plan.price_kopecks // 31
            for plan in self.plans.values()
            if plan is not None and plan.suspended_at is None
        )
        return Outlook(self.balance, spend)

    async def plan_of(self, actor: Actor, project_name: str) -> ProjectPlan | None:
        if project_name not in self.plans:
            raise NotFoundError(f"No project {project_name!r}.")
        return self.plans[project_name]

    async def preview_change(
        self, actor: Actor, project_name: str, plan_code: str
    ) -> PlanChangePreview:
        current = await self.plan_of(actor, project_name)
        plan = BY_CODE[plan_code]
        old = current.plan.price_kopecks if current else 0
        extra = upgrade_difference(old, plan.price_kopecks, TODAY)
        return PlanChangePreview(current.plan if current else None, plan, extra, plan.price_kopecks)

    async def change_plan(self, actor: Actor, project_name: str, plan_code: str) -> ProjectPlan:
        current = await self.plan_of(actor, project_name)
        if self.refusal is not None:
            raise ConflictError(self.refusal)
        assert current is not None
        changed = replace(current, plan=BY_CODE[plan_code])
        self.plans[project_name] = changed
        self.changed.append((project_name, plan_code))
        return changed


@dataclass
class FakeBalances:
    entries: list[Entry] = field(default_factory=lambda: list(ALICE_LEDGER))

    async def history(
        self, actor: Actor, *, limit: int = 50, before_id: int | None = None
    ) -> list[Entry]:
        shown = [e for e in self.entries if before_id is None or e.id < before_id]
        return shown[:limit]


@dataclass
class FakePayments:
    text: str = (
        "Pay by bank transfer to Example Hosting LLC, account 40702810000000000001,"
        " quoting your username. The balance grows when the operator records it."
    )

    def instructions(self) -> list[tuple[str, str]]:
        return [("manual", self.text)]


@dataclass
class FakeInvoices:
    invoices: list[Invoice] = field(default_factory=lambda: [NOVEMBER_INVOICE])

    async def list(self, actor: Actor) -> list[Invoice]:
        return self.invoices

    async def get(self, actor: Actor, label: str) -> Invoice:
        for invoice in self.invoices:
            if parse_label(label) == invoice.month:
                return invoice
        raise NotFoundError(f"No invoice for {label}.")


@dataclass
class FakePromised:
    """Promised payments: 3 days of the fixed spend on offer; `taken` in the last 28 days;
    a take refused with `refusal` (the core's words) when set."""

    spend: int = 4_999
    taken: int = 1
    refusal: str | None = None

    async def offer(self, actor: Actor) -> int:
        return 3 * self.spend

    async def history(self, actor: Actor) -> list[Promise]:
        now = datetime.now(UTC)
        return [
            Promise(n, 1, 3 * self.spend, now - timedelta(days=n), now, now)
            for n in range(1, self.taken + 1)
        ]

    async def take(self, actor: Actor) -> Promise:
        if self.refusal is not None:
            raise ConflictError(self.refusal, title="No promised payment left")
        self.taken += 1
        taken = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
        return Promise(9, 1, 3 * self.spend, taken, taken + timedelta(days=3), None)
