"""Monthly invoices (this module owns `invoices`, `invoice_lines`, `invoice_entries`,
`invoice_numbers` and `invoice_runs`).

An invoice bills an account's ledger entries of one month that no invoice billed yet: the
daily charges as one line per project (its plan, the days, the amount), every other charge,
refund or adjustment as a line of its own. Top-ups and promised credit are payments, not
lines. An entry of a month already invoiced (a late adjustment, a day charged after downtime)
is billed on the account's next invoice, marked as a correction: issued invoices never change.

Numbers have no gaps: each comes from one counter row, incremented in the transaction that
writes the invoice, so a rolled-back issue gives its number back and issuers take turns.
The workers issue them as a chore once the month's days are all charged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from core.actor import Actor
from core.billing import charges, ledger, plans, subscriptions
from core.billing.ledger import Entry
from core.billing.proration import billing_day
from core.db.pool import Connection, Pool
from core.db.unit import reading
from core.errors import NotFoundError, PanelError
from core.projects.service import ProjectService

log = logging.getLogger(__name__)

BILLED_KINDS = ["charge", "refund", "adjustment"]
# Advisory locks (class, object): the issuing run (object 0) and one account's issue.
LOCK_CLASS = 0x6768_7369  # "ghsi"
# Months an account's first run looks back at most (older entries go on the oldest of them).
MAX_CATCH_UP_MONTHS = 24
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
INVOICE_COLUMNS = "id, number, user_id, month, currency, total, issued_at"
LINE_COLUMNS = "position, description, project_name, plan_name, days, amount"

# Ledger entries of kinds $1, before day $3 (in time zone $2), that no invoice billed yet.
_UNBILLED = (
    "kind = ANY($1::text[]) AND coalesce(day, (created_at AT TIME ZONE $2)::date) < $3"
    " AND NOT EXISTS (SELECT 1 FROM invoice_entries AS billed WHERE billed.ledger_id = ledger.id)"
)


@dataclass(frozen=True)
class InvoiceLine:
    position: int
    description: str
    project_name: str | None
    plan_name: str | None
    days: int | None
    amount: int  # kopecks owed: charges positive, credits negative


@dataclass(frozen=True)
class Invoice:
    id: int
    number: int
    user_id: int
    month: date  # its first day
    currency: str
    total: int
    issued_at: datetime
    lines: tuple[InvoiceLine, ...]

    @property
    def label(self) -> str:
        """ "2026-12": the month, as in the invoice's file names."""
        return f"{self.month:%Y-%m}"

    @property
    def month_name(self) -> str:
        return f"{MONTH_NAMES[self.month.month - 1]} {self.month.year}"


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def parse_label(label: str) -> date | None:
    """The month of "2026-12" (None for anything else)."""
    try:
        parsed = datetime.strptime(label, "%Y-%m")
    except ValueError:
        return None
    if f"{parsed:%Y-%m}" != label:  # strptime also takes "2026-1"
        return None
    return parsed.date()


def entry_month(entry: Entry, zone: ZoneInfo) -> date:
    """The month an entry belongs to: its charged day's, else the day it was made."""
    day = entry.day if entry.day is not None else entry.created_at.astimezone(zone).date()
    return month_of(day)


def invoice_lines(
    entries: list[Entry],
    month: date,
    zone: ZoneInfo,
    project_names: dict[int, str],
    plan_names: dict[int, str],
    current_plans: dict[int, str] | None = None,
) -> list[InvoiceLine]:
    """The lines billing `entries` on the invoice of `month`: per project, plan and month the
    daily charges, then each other entry; entries of earlier months are marked corrections.
    `plan_names` names plan versions by id; `current_plans` names each project's plan now, for
    charges posted before charges named their plan."""
    current_plans = current_plans or {}
    daily: dict[tuple[date, int | None, int | None], list[Entry]] = defaultdict(list)
    others: list[Entry] = []
    for entry in entries:
        if entry.kind == "charge" and entry.idempotency_key.startswith("charge:"):
            daily[(entry_month(entry, zone), entry.project_id, entry.plan_id)].append(entry)
        else:
            others.append(entry)

    def plan_of(entry: Entry) -> str | None:
        if entry.plan_id is not None and entry.plan_id in plan_names:
            return plan_names[entry.plan_id]
        if entry.project_id is not None and entry.kind == "charge":
            return current_plans.get(entry.project_id)
        return None

    def project(project_id: int | None) -> str:
        if project_id is None:
            return "(a deleted project)"
        return project_names.get(project_id, "(a deleted project)")

    def when(of: date) -> str:
        if of == month:
            return ""
        return f" (correction for {MONTH_NAMES[of.month - 1]} {of.year})"

    drafts: list[tuple[str, str | None, str | None, int | None, int]] = []

    def first_day(group: list[Entry]) -> date:
        return min(entry.day or month for entry in group)

    for (of, project_id, _), group in sorted(
        daily.items(), key=lambda item: (item[0][0], project(item[0][1]), first_day(item[1]))
    ):
        # Deleted projects share one line: their days would add up to nothing meaningful.
        days = len({entry.day for entry in group}) if project_id is not None else None
        amount = -sum(entry.amount for entry in group)
        drafts.append((f"Hosting{when(of)}", project(project_id), plan_of(group[0]), days, amount))
    for entry in others:
        name = project(entry.project_id) if entry.project_id is not None else None
        reason = entry.reason or entry.kind
        text = f"{entry.kind.capitalize()}: {reason}{when(entry_month(entry, zone))}"
        drafts.append((text, name, plan_of(entry), None, -entry.amount))
    return [InvoiceLine(position, *draft) for position, draft in enumerate(drafts, start=1)]


async def _load(conn: Connection, where: str, *args: object) -> list[Invoice]:
    rows = await conn.fetch(
        f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE {where} ORDER BY month DESC", *args
    )
    if not rows:
        return []
    lines = await conn.fetch(
        f"SELECT invoice_id, {LINE_COLUMNS} FROM invoice_lines"
        " WHERE invoice_id = ANY($1::bigint[]) ORDER BY invoice_id, position",
        [row["id"] for row in rows],
    )
    by_invoice: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for line in lines:
        by_invoice[line["invoice_id"]].append(line)
    return [
        Invoice(
            **dict(row),
            lines=tuple(
                InvoiceLine(**{k: v for k, v in dict(line).items() if k != "invoice_id"})
                for line in by_invoice[row["id"]]
            ),
        )
        for row in rows
    ]


async def by_number(conn: Connection, number: int) -> Invoice | None:
    """Any account's invoice by its number (for the operators' app, which checks who asks)."""
    found = await _load(conn, "number = $1", number)
    return found[0] if found else None


async def _unbilled(conn: Connection, user_id: int, time_zone: str, before: date) -> list[Entry]:
    return await ledger.matching(
        conn, f"{_UNBILLED} AND user_id = $4", BILLED_KINDS, time_zone, before, user_id
    )


async def of_month(conn: Connection, user_id: int, month: date) -> Invoice | None:
    found = await _load(conn, "user_id = $1 AND month = $2", user_id, month)
    return found[0] if found else None


async def issue(
    conn: Connection,
    projects: ProjectService,
    user_id: int,
    month: date,
    time_zone: str,
    currency: str,
) -> Invoice | None:
    """The account's invoice of `month`, issued now if it has unbilled entries up to that
    month's end (None when it has none). Call it in a transaction: the number, the invoice and
    its lines commit or roll back together. Issuing a month twice returns the first invoice."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2::int)", LOCK_CLASS, user_id)
    existing = await of_month(conn, user_id, month)
    if existing is not None:
        return existing
    zone = ZoneInfo(time_zone)
    entries = await _unbilled(conn, user_id, time_zone, next_month(month))
    if not entries:
        return None
    project_ids = sorted({entry.project_id for entry in entries if entry.project_id is not None})
    names = {}
    for project_id in project_ids:
        project = await projects.by_id(project_id, conn)
        if project is not None:
            names[project_id] = project.name
    plan_names = {}
    for plan_id in sorted({entry.plan_id for entry in entries if entry.plan_id is not None}):
        plan = await plans.get(conn, plan_id)
        if plan is not None:
            plan_names[plan_id] = plan.name
    current = await subscriptions.plan_names(conn, project_ids)
    lines = invoice_lines(entries, month, zone, names, plan_names, current)
    # The row is made by the migration; an upsert also survives its loss (a truncation).
    number = await conn.fetchval(
        "INSERT INTO invoice_numbers AS n (only_row, last_number) VALUES (true, 1)"
        " ON CONFLICT (only_row) DO UPDATE SET last_number = n.last_number + 1"
        " RETURNING last_number"
    )
    invoice_id = await conn.fetchval(
        "INSERT INTO invoices (number, user_id, month, currency, total)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        number, user_id, month, currency, sum(line.amount for line in lines),
    )  # fmt: skip
    await conn.executemany(
        f"INSERT INTO invoice_lines (invoice_id, {LINE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (invoice_id, line.position, line.description, line.project_name, line.plan_name,
             line.days, line.amount)
            for line in lines
        ],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO invoice_entries (ledger_id, invoice_id) SELECT unnest($1::bigint[]), $2",
        [entry.id for entry in entries],
        invoice_id,
    )
    return await of_month(conn, user_id, month)


@dataclass(frozen=True)
class InvoiceRunResult:
    month: date
    issued: int


class InvoiceRun:
    """The workers' chore: once a month's days are all charged, issue every account's invoice
    of that month (and of months a stopped panel missed). One runner at a time."""

    def __init__(self, pool: Pool, projects: ProjectService, time_zone: str, currency: str) -> None:
        self._pool = pool
        self._projects = projects
        self._time_zone = time_zone
        self._currency = currency

    async def run(self, now: datetime | None = None) -> InvoiceRunResult | None:
        """Issue what is due; None when nothing is (or another runner is at it)."""
        today = billing_day(now or datetime.now(UTC), self._time_zone)
        closed = month_of(month_of(today) - timedelta(days=1))  # the last finished month
        async with self._pool.acquire() as conn:
            charged = await charges.charged_through(conn)
            if charged is None or charged < next_month(closed) - timedelta(days=1):
                return None  # the month's last days are not charged yet
            if await conn.fetchval("SELECT 1 FROM invoice_runs WHERE month = $1", closed):
                return None
            # A transaction's lock on a connection of its own: pooled connections are handed
            # back without a reset, so a session lock could outlive a cancelled run.
            async with self._pool.acquire() as lock, lock.transaction():
                if not await lock.fetchval("SELECT pg_try_advisory_xact_lock($1, 0)", LOCK_CLASS):
                    return None
                if await conn.fetchval("SELECT 1 FROM invoice_runs WHERE month = $1", closed):
                    return None  # another runner finished it while this one looked
                issued = await self._issue_all(conn, closed)
                await conn.execute(
                    "INSERT INTO invoice_runs (month) VALUES ($1) ON CONFLICT DO NOTHING", closed
                )
        return InvoiceRunResult(closed, issued)

    async def _issue_all(self, conn: Connection, closed: date) -> int:
        """How many invoices were issued. An account that fails stops the run: the month is
        not marked done, and the next round (idempotent) tries again."""
        zone = ZoneInfo(self._time_zone)
        started = await conn.fetchval("SELECT clock_timestamp()")
        end = next_month(closed)
        accounts = await ledger.accounts_matching(
            conn, _UNBILLED, BILLED_KINDS, self._time_zone, end
        )
        issued = 0
        for user_id in accounts:
            unbilled = await _unbilled(conn, user_id, self._time_zone, end)
            oldest = min((entry_month(entry, zone) for entry in unbilled), default=closed)
            month = max(oldest, _months_before(closed, MAX_CATCH_UP_MONTHS))
            while month <= closed:
                async with conn.transaction():
                    made = await issue(
                        conn, self._projects, user_id, month, self._time_zone, self._currency
                    )
                issued += made is not None and made.issued_at >= started
                month = next_month(month)
        return issued

    async def run_logged(self) -> None:
        """`run` for a worker's loop: a failure is logged and retried on the next round."""
        try:
            result = await self.run()
        except PanelError as error:
            log.warning("invoices were not issued: %s", error)
            return
        except Exception:
            log.exception("issuing invoices failed")
            return
        if result is not None:
            log.info("invoices of %s: %d issued", f"{result.month:%Y-%m}", result.issued)


def _months_before(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


class InvoiceService:
    """An account's invoices, for its owner (another tenant's read as not found)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> list[Invoice]:
        """Newest month first."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as db:
            return await _load(db, "user_id = $1", user_id)

    async def get(
        self,
        actor: Actor,
        label: str,
        *,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> Invoice:
        """The invoice of the month `label` ("2026-12")."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        month = parse_label(label)
        if month is None:
            raise NotFoundError(f"No invoice {label!r}: months are written like 2026-12.")
        async with reading(self._pool, conn) as db:
            found = await of_month(db, user_id, month)
        if found is None:
            raise NotFoundError(f"No invoice for {label}.")
        return found
