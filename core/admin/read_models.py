"""The admin app's lists: users, projects and plans, filtered and paged in SQL.

They read the views of migration 0017 (`admin_users`, `admin_projects`, `admin_plans`), which
join the owners' tables once, read-only. A page is keyset-paged on the name in byte order
(`~<~`, the order of the `text_pattern_ops` indexes that also serve the prefix filters), so
a page costs the same on the first screen and the thousandth, and no list loads a table.
Filters are prefixes: each keystroke of `/` is an index range, never a scan.

The SQL is assembled from the constant fragments below; what a person typed only ever
travels as a `$n` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

import asyncpg

from core.billing import plans as billing_plans
from core.billing.plans import Plan
from core.db.pool import Connection
from core.deploy.store import projects_deploying
from core.identity.access_tokens import AccessToken, live_token_counts, live_tokens_of
from core.identity.keys import SSHKey, keys_of, owners_of_fingerprint
from core.identity.sessions import OpenSession, open_sessions_of

PAGE_SIZE = 50
MAX_PAGE = 500
PROJECT_STATES = ("new", "deploying", "running", "stopped", "failed")


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    email: str
    role: str
    created_at: datetime
    blocked: bool
    balance_kopecks: int
    projects: int
    keys: int
    sessions: int
    tokens: int = 0  # live access tokens (not revoked, not expired)


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    user_id: int
    username: str
    state: str
    stopped: bool
    suspended: bool
    plan: str | None  # "host-1 v2"; None: made before billing, the settings' limits
    cpu_millicores: int | None
    ram_mb: int | None
    disk_mb: int | None
    max_services: int | None
    price_kopecks: int | None
    last_deployment_id: int | None
    last_deployment_state: str | None
    last_deployment_at: datetime | None
    # Suspended by an admin (core.admin.holds); `suspended` is billing's, for non-payment.
    held: bool = False


@dataclass(frozen=True)
class PlanRow:
    """A plan version as billing has it, and how many projects are on it."""

    plan: Plan
    projects: int


@dataclass(frozen=True)
class ProjectFilter:
    name_prefix: str = ""
    state: str | None = None
    user_id: int | None = None
    plan_code: str | None = None


def like_prefix(text: str) -> str:
    """A LIKE pattern for names starting with `text`, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


class _Where:
    """WHERE clauses made of constant fragments, their values as numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.values: list[object] = []

    def add(self, fragment: str, value: object) -> None:
        """`fragment` holds one `{}` where the parameter's number goes."""
        self.values.append(value)
        self.clauses.append(fragment.format(f"${len(self.values)}"))

    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.clauses)) if self.clauses else ""

    def param(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


USER_COLUMNS = (
    "id, username, email, role, created_at, blocked_at, balance_kopecks, projects, keys, sessions"
)


def _user(row: asyncpg.Record) -> UserRow:
    return UserRow(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        role=row["role"],
        created_at=row["created_at"],
        blocked=row["blocked_at"] is not None,
        balance_kopecks=row["balance_kopecks"],
        projects=row["projects"],
        keys=row["keys"],
        sessions=row["sessions"],
    )


async def users_page(
    conn: Connection, search: str = "", *, after: str | None = None, limit: int = PAGE_SIZE
) -> list[UserRow]:
    """Users in name order after `after`. `search`: a username prefix; with an `@`, an email
    prefix; `SHA256:...`, the holders of that key; `p:NAME`, owners of projects so named."""
    where = _Where()
    search = search.strip()
    if search.startswith("SHA256:"):
        where.add("id = any({}::bigint[])", await owners_of_fingerprint(conn, search))
    elif search.startswith("p:"):
        where.add(
            "id = any(ARRAY(SELECT DISTINCT user_id FROM admin_projects"
            " WHERE name LIKE {} LIMIT 1000))",
            like_prefix(search[2:].lower()),
        )
    elif "@" in search:
        where.add("lower(email) LIKE {}", like_prefix(search.lower()))
    elif search:
        where.add("username LIKE {}", like_prefix(search.lower()))
    if after is not None:
        where.add("username ~>~ {}", after)
    sql = (
        f"SELECT {USER_COLUMNS} FROM admin_users{where.sql()}"
        f" ORDER BY username USING ~<~ LIMIT {where.param(_limit(limit))}"
    )
    return await _with_tokens(conn, [_user(row) for row in await conn.fetch(sql, *where.values)])


async def _with_tokens(conn: Connection, rows: list[UserRow]) -> list[UserRow]:
    """The rows with their live tokens counted: one query for the page (the view of 0017
    has no such column, and a view changes only with a migration)."""
    if not rows:
        return rows
    counts = await live_token_counts(conn, [row.id for row in rows])
    return [replace(row, tokens=counts.get(row.id, 0)) for row in rows]


async def user_by_name(conn: Connection, username: str) -> UserRow | None:
    row = await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM admin_users WHERE username = $1", username
    )
    return (await _with_tokens(conn, [_user(row)]))[0] if row else None


@dataclass(frozen=True)
class UserDetail:
    """One account as `:users`' detail screen shows it: a constant number of queries, whatever
    the number of projects (usage is measured apart, after the screen shows)."""

    user: UserRow
    projects: list[ProjectRow]
    sessions: list[OpenSession]
    keys: list[SSHKey]
    tokens: list[AccessToken]


async def user_detail(conn: Connection, username: str) -> UserDetail | None:
    user = await user_by_name(conn, username)
    if user is None:
        return None
    projects = await projects_page(conn, ProjectFilter(user_id=user.id), limit=MAX_PAGE)
    return UserDetail(
        user=user,
        projects=projects,
        sessions=await open_sessions_of(conn, user.id),
        keys=await keys_of(conn, user.id),
        tokens=await live_tokens_of(conn, user.id),
    )


PROJECT_COLUMNS = (
    "id, name, user_id, username, state, stopped, suspended_at, plan_code, plan_version,"
    " cpu_millicores, ram_mb, disk_mb, max_services, price_kopecks, last_deployment_id,"
    " last_deployment_state, last_deployment_at, admin_held_at"
)


def _project(row: asyncpg.Record) -> ProjectRow:
    plan = f"{row['plan_code']} v{row['plan_version']}" if row["plan_code"] else None
    return ProjectRow(
        id=row["id"],
        name=row["name"],
        user_id=row["user_id"],
        username=row["username"],
        state=row["state"],
        stopped=row["stopped"],
        suspended=row["suspended_at"] is not None,
        plan=plan,
        cpu_millicores=row["cpu_millicores"],
        ram_mb=row["ram_mb"],
        disk_mb=row["disk_mb"],
        max_services=row["max_services"],
        price_kopecks=row["price_kopecks"],
        last_deployment_id=row["last_deployment_id"],
        last_deployment_state=row["last_deployment_state"],
        last_deployment_at=row["last_deployment_at"],
        held=row["admin_held_at"] is not None,
    )


async def projects_page(
    conn: Connection,
    found: ProjectFilter | None = None,
    *,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> list[ProjectRow]:
    """Projects in name order after `after`, with their state, plan and last deployment."""
    found = found or ProjectFilter()
    where = _Where()
    if found.name_prefix.strip():
        where.add("name LIKE {}", like_prefix(found.name_prefix.strip().lower()))
    if found.state is not None:
        where.add("state = {}", found.state)
        if found.state == "deploying":
            # The view's state is computed per project: this alone walked the whole name
            # index to find the few deploying, or none (850 ms on 200,000 projects). A
            # superset (any deploy under way, not only the latest); the state keeps it exact.
            where.add("id = any({}::bigint[])", await projects_deploying(conn))
    if found.user_id is not None:
        where.add("user_id = {}", found.user_id)
    if found.plan_code is not None:
        where.add("plan_code = {}", found.plan_code)
    if after is not None:
        where.add("name ~>~ {}", after)
    sql = (
        f"SELECT {PROJECT_COLUMNS} FROM admin_projects{where.sql()}"
        f" ORDER BY name USING ~<~ LIMIT {where.param(_limit(limit))}"
    )
    return [_project(row) for row in await conn.fetch(sql, *where.values)]


async def project_by_name(conn: Connection, name: str) -> ProjectRow | None:
    row = await conn.fetchrow(f"SELECT {PROJECT_COLUMNS} FROM admin_projects WHERE name = $1", name)
    return _project(row) if row else None


@dataclass(frozen=True)
class DeploymentRow:
    id: int
    project: str
    username: str  # who asked for it
    operation: str  # deploy, stop, start, delete
    reason: str
    state: str
    archive_name: str
    worker: str | None
    lease_expires_at: datetime | None  # the worker's heartbeat renews it
    attempts: int
    cancel_requested: bool
    created_at: datetime


ACTIVE_STATES = ("queued", "building", "starting", "working")
DEPLOYMENT_COLUMNS = (
    "id, project_name, username, operation, reason, state, archive_name, worker,"
    " lease_expires_at, attempts, cancel_requested, created_at"
)


async def deployments_page(
    conn: Connection,
    *,
    active_only: bool = True,
    state: str | None = None,
    project_prefix: str = "",
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[DeploymentRow]:
    """Deployments newest first: the active ones (the queue and the running jobs), or all."""
    where = _Where()
    if active_only and state is None:
        where.add("state = any({}::text[])", list(ACTIVE_STATES))
    if state is not None:
        where.add("state = {}", state)
    if project_prefix.strip():
        where.add("project_name LIKE {}", like_prefix(project_prefix.strip().lower()))
    if before_id is not None:
        where.add("id < {}", before_id)
    sql = (
        f"SELECT {DEPLOYMENT_COLUMNS} FROM admin_deployments{where.sql()}"
        f" ORDER BY id DESC LIMIT {where.param(_limit(limit))}"
    )
    rows = await conn.fetch(sql, *where.values)
    return [
        DeploymentRow(
            id=row["id"],
            project=row["project_name"],
            username=row["username"],
            operation=row["operation"],
            reason=row["reason"],
            state=row["state"],
            archive_name=row["archive_name"],
            worker=row["worker"],
            lease_expires_at=row["lease_expires_at"],
            attempts=row["attempts"],
            cancel_requested=row["cancel_requested"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ArrearsRow:
    id: int
    username: str
    balance_kopecks: int
    since: datetime  # at or below zero since: the grace period runs from here
    suspended_projects: int


async def arrears_page(
    conn: Connection, search: str = "", *, after: str | None = None, limit: int = PAGE_SIZE
) -> list[ArrearsRow]:
    """Accounts at or below zero, in name order after `after` (a username prefix filters)."""
    where = _Where()
    if search.strip():
        where.add("username LIKE {}", like_prefix(search.strip().lower()))
    if after is not None:
        where.add("username ~>~ {}", after)
    sql = (
        "SELECT id, username, balance_kopecks, since, suspended_projects FROM admin_arrears"
        f"{where.sql()} ORDER BY username USING ~<~ LIMIT {where.param(_limit(limit))}"
    )
    return [ArrearsRow(**dict(row)) for row in await conn.fetch(sql, *where.values)]


async def charges_on(conn: Connection, day: date) -> tuple[int, int]:
    """(entries, kopecks charged) of one billing day."""
    row = await conn.fetchrow(
        "SELECT count(*) AS entries, coalesce(-sum(amount), 0) AS kopecks"
        " FROM admin_charges WHERE day = $1",
        day,
    )
    assert row is not None
    return row["entries"], row["kopecks"]


async def plans(conn: Connection) -> list[PlanRow]:
    """Every plan version, retired ones too, with the projects on each (a handful of rows:
    billing's plans, and the counts of the view)."""
    counts = {
        row["id"]: row["projects"]
        for row in await conn.fetch("SELECT id, projects FROM admin_plans")
    }
    return [
        PlanRow(plan, counts.get(plan.id, 0)) for plan in await billing_plans.every_version(conn)
    ]


@dataclass(frozen=True)
class RevenueRow:
    month: date  # its first day (billing time zone)
    charged_kopecks: int  # charges for the days of the month
    charges: int  # how many charge entries
    paid_kopecks: int  # top-ups received during the month


def months_back(month: date, count: int) -> date:
    """The first day of the month `count` months before `month`'s."""
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


async def revenue(
    conn: Connection, today: date, time_zone: str, months: int = 12
) -> list[RevenueRow]:
    """Charges and payments per calendar month, the last `months` up to `today`'s, newest first
    (months without any: zero). From the ledger's running totals (migration 0021): a year is
    365 days and 35,040 quarter hours, however many entries it had."""
    current = today.replace(day=1)
    first = months_back(current, months - 1)
    charged = await conn.fetch(
        "SELECT date_trunc('month', day)::date AS month, sum(kopecks) AS kopecks,"
        " sum(entries) AS entries FROM admin_charge_days WHERE day >= $1 GROUP BY 1",
        first,
    )
    paid = await conn.fetch(
        "SELECT date_trunc('month', quarter AT TIME ZONE $2)::date AS month,"
        " sum(kopecks) AS kopecks FROM admin_topup_quarters"
        " WHERE quarter >= ($1::timestamp AT TIME ZONE $2) GROUP BY 1",
        datetime(first.year, first.month, 1),
        time_zone,
    )
    charges_by = {row["month"]: (row["kopecks"], row["entries"]) for row in charged}
    paid_by = {row["month"]: row["kopecks"] for row in paid}
    rows = []
    for back in range(months):
        month = months_back(current, back)
        kopecks, entries = charges_by.get(month, (0, 0))
        rows.append(RevenueRow(month, int(kopecks), int(entries), int(paid_by.get(month, 0))))
    return rows


@dataclass(frozen=True)
class InvoiceRow:
    id: int
    number: int
    user_id: int
    username: str
    month: date
    currency: str
    total: int
    issued_at: datetime


async def invoices_page(
    conn: Connection,
    username_prefix: str = "",
    *,
    before_number: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[InvoiceRow]:
    """Every account's invoices, newest (highest number) first, before `before_number`; a
    username prefix narrows them to those accounts."""
    where = _Where()
    if username_prefix.strip():
        where.add("username LIKE {}", like_prefix(username_prefix.strip().lower()))
    if before_number is not None:
        where.add("number < {}", before_number)
    sql = (
        "SELECT id, number, user_id, username, month, currency, total, issued_at"
        f" FROM admin_invoices{where.sql()} ORDER BY number DESC LIMIT {where.param(_limit(limit))}"
    )
    return [InvoiceRow(**dict(row)) for row in await conn.fetch(sql, *where.values)]
