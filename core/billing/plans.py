"""Plans: versioned tariffs. A version is never edited; a change is a new version of its code,
and projects keep the version they took. `retired` versions are not offered to new projects."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from core.actor import Actor
from core.audit import entries as audit
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import NotFoundError, PermissionDenied, ValidationError

FREE = "free"
CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")  # the same rule as the table's CHECK
PLAN_COLUMNS = (
    "id, code, version, name, price_kopecks, cpu_millicores, ram_mb, disk_mb, max_services,"
    " pids, retired"
)
MIN_PIDS = 256  # the panel's default before plans; a plan derives its own from its RAM


def pids_for(ram_mb: int) -> int:
    """Processes (and threads) a plan's project may run together when its operator names no
    number: an eighth per MiB of RAM, never under MIN_PIDS (the rule migration 0012 applied)."""
    return max(MIN_PIDS, ram_mb // 8)


@dataclass(frozen=True)
class Plan:
    id: int
    code: str
    version: int
    name: str
    price_kopecks: int
    cpu_millicores: int
    ram_mb: int
    disk_mb: int
    max_services: int
    pids: int
    retired: bool

    @property
    def is_free(self) -> bool:
        return self.price_kopecks == 0


@dataclass(frozen=True)
class PlanSpec:
    """What an operator gives for a new version."""

    code: str
    name: str
    price_kopecks: int
    cpu_millicores: int
    ram_mb: int
    disk_mb: int
    max_services: int
    pids: int | None = None  # None: derived from the RAM (pids_for)

    @property
    def pids_limit(self) -> int:
        return self.pids if self.pids is not None else pids_for(self.ram_mb)

    def checked(self) -> PlanSpec:
        if not CODE.fullmatch(self.code):
            raise ValidationError(
                "A plan code is 1 to 31 lowercase letters, digits or dashes, not starting with"
                " a dash."
            )
        if not 1 <= len(self.name) <= 80:
            raise ValidationError("A plan's name is 1 to 80 characters.")
        if self.price_kopecks < 0:
            raise ValidationError("A plan's price cannot be negative.")
        for label, value in (
            ("CPU", self.cpu_millicores),
            ("RAM", self.ram_mb),
            ("disk", self.disk_mb),
            ("services", self.max_services),
            ("pids", self.pids_limit),
        ):
            if value <= 0:
                raise ValidationError(f"A plan's {label} must be above zero.")
        return self


# The tariffs the panel was made to sell, and the free plan (one project per account).
DEFAULT_PLANS = (
    PlanSpec(FREE, "Free", 0, 250, 256, 256, 2),
    PlanSpec("host-0", "Host-0", 50_000, 1000, 4096, 1024, 5),
    PlanSpec("host-1", "Host-1", 100_000, 2000, 8192, 5120, 10),
    PlanSpec("host-2", "Host-2", 150_000, 3000, 16384, 10240, 20),
)


def _plan(row: asyncpg.Record) -> Plan:
    return Plan(**dict(row))


async def get(conn: Connection, plan_id: int) -> Plan | None:
    row = await conn.fetchrow(f"SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1", plan_id)
    return _plan(row) if row else None


async def current(conn: Connection, code: str) -> Plan | None:
    """The newest version of `code` offered to new projects."""
    row = await conn.fetchrow(
        f"SELECT {PLAN_COLUMNS} FROM plans WHERE code = $1 AND NOT retired"
        " ORDER BY version DESC LIMIT 1",
        code,
    )
    return _plan(row) if row else None


async def every_version(conn: Connection) -> list[Plan]:
    """Every version of every plan, retired ones too: by code, newest version first."""
    rows = await conn.fetch(f"SELECT {PLAN_COLUMNS} FROM plans ORDER BY code, version DESC")
    return [_plan(row) for row in rows]


class PlanService:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def seed(self) -> None:
        """The default plans, once (a fresh database, or one whose tables were emptied)."""
        async with transaction(self._pool) as tx:
            for spec in DEFAULT_PLANS:
                await tx.execute(
                    "INSERT INTO plans (code, version, name, price_kopecks, cpu_millicores,"
                    " ram_mb, disk_mb, max_services, pids)"
                    " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (code, version) DO NOTHING",
                    spec.code, spec.name, spec.price_kopecks, spec.cpu_millicores,
                    spec.ram_mb, spec.disk_mb, spec.max_services, spec.pids_limit,
                )  # fmt: skip

    async def list(self, *, with_old: bool = False, conn: Connection | None = None) -> list[Plan]:
        """The plans offered to new projects (the newest version of each code), cheapest first;
        `with_old`: every version, retired ones too."""
        where = (
            "true"
            if with_old
            else "NOT retired AND version = (SELECT max(version) FROM plans newer"
            " WHERE newer.code = plans.code AND NOT newer.retired)"
        )
        async with reading(self._pool, conn) as db:
            rows = await db.fetch(
                f"SELECT {PLAN_COLUMNS} FROM plans WHERE {where}"
                " ORDER BY price_kopecks, code, version"
            )
        return [_plan(row) for row in rows]

    async def current(self, code: str, *, conn: Connection | None = None) -> Plan:
        async with reading(self._pool, conn) as db:
            plan = await current(db, code)
        if plan is None:
            raise NotFoundError(f"No plan {code!r}.")
        return plan

    async def add_version(
        self, actor: Actor, spec: PlanSpec, *, conn: Connection | None = None
    ) -> Plan:
        """A new version of `spec.code` (version 1 for a new code). Projects on older versions
        keep them; new projects get this one."""
        actor.require_change()
        if not actor.is_operator:
            raise PermissionDenied("Only an operator can change plans.")
        spec = spec.checked()
        async with transaction(self._pool, conn) as tx:
            # One version number per code even when two operators add at once.
            await tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('ghst plans ' || $1))", spec.code
            )
            row = await tx.fetchrow(
                "INSERT INTO plans (code, version, name, price_kopecks, cpu_millicores, ram_mb,"
                " disk_mb, max_services, pids) SELECT $1, coalesce(max(version), 0) + 1, $2, $3,"
                f" $4, $5, $6, $7, $8 FROM plans WHERE code = $1 RETURNING {PLAN_COLUMNS}",
                spec.code, spec.name, spec.price_kopecks, spec.cpu_millicores,
                spec.ram_mb, spec.disk_mb, spec.max_services, spec.pids_limit,
            )  # fmt: skip
            assert row is not None
            plan = _plan(row)
            await audit.record(
                tx,
                actor,
                "plan.create",
                audit.Target("plan", plan.code, plan.id),
                metadata={"version": plan.version, "price_kopecks": plan.price_kopecks},
            )
        return plan

    async def retire(self, actor: Actor, code: str, *, conn: Connection | None = None) -> int:
        """Offer no version of `code` to new projects; the projects on it keep it (they point
        at their version's row). Returns how many versions were retired. The free plan stays:
        every new account's first project takes it."""
        actor.require_change()
        if not actor.is_operator:
            raise PermissionDenied("Only an operator can change plans.")
        if code == FREE:
            raise ValidationError("The free plan cannot be retired: new accounts start on it.")
        async with transaction(self._pool, conn) as tx:
            ids = [
                row["id"]
                for row in await tx.fetch(
                    "UPDATE plans SET retired = true WHERE code = $1 AND NOT retired RETURNING id",
                    code,
                )
            ]
            if not ids:
                if await tx.fetchval("SELECT count(*) FROM plans WHERE code = $1", code):
                    raise ValidationError(f"Plan {code!r} is retired already.")
                raise NotFoundError(f"No plan {code[:40]!r}.")
            await audit.record(
                tx,
                actor,
                "plan.retire",
                audit.Target("plan", code),
                metadata={"versions": len(ids)},
            )
        return len(ids)
