"""Environment variables of a project: set and unset by its owner, applied when containers are
next created (deploy, restart, rollback). Values are shown masked in lists.

Names are what a shell accepts (`[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters); the panel
keeps `PORT` and every `GHST_*` name for itself. A value is at most 32 KiB of UTF-8 and cannot
hold a NUL byte (no process environment can). A project has at most `MAX_VARS` variables.
Every method a user reaches resolves the project through `ProjectService.resolve`, so another
user's project is "not found", exactly like a missing one. Listing needs the "read" scope,
setting and unsetting "env:write".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.actor import Actor
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import NotFoundError, ValidationError
from core.projects import service as projects_store
from core.projects.service import ProjectService

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_NAME_LENGTH = 128
MAX_VALUE_BYTES = 32 * 1024
MAX_VARS = 100
# Set by the panel itself on every container: a user's value would be overwritten or clash.
RESERVED_NAMES = frozenset({"PORT"})
RESERVED_PREFIX = "GHST_"
BULLETS = "••••"
# Values up to this long are all hidden; longer ones show their first characters.
SHORT_VALUE = 8
SHOWN_CHARACTERS = 2


def mask(value: str) -> str:
    """A value as lists show it: "sk••••" when longer than 8 characters, else "••••".

    The number of bullets is fixed, so a list does not tell how long a secret is. An empty
    value stays empty (the screen says so).
    """
    if not value:
        return ""
    if len(value) > SHORT_VALUE:
        return value[:SHOWN_CHARACTERS] + BULLETS
    return BULLETS


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str

    @property
    def masked(self) -> str:
        return mask(self.value)


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("Enter a name for the variable.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"A variable name is at most {MAX_NAME_LENGTH} characters long.")
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            "A variable name uses letters, digits and underscores, and does not start with a "
            "digit (like DATABASE_URL)."
        )
    if name in RESERVED_NAMES:
        raise ValidationError(
            f"{name} is set by the panel itself: your app reads the port to listen on from it. "
            "Set the app's port in the project's settings instead."
        )
    if name.startswith(RESERVED_PREFIX):
        raise ValidationError(
            f"Names starting with {RESERVED_PREFIX} are kept for the panel. Please choose another "
            "name."
        )
    return name


def validate_value(value: str) -> str:
    if "\x00" in value:
        raise ValidationError("A value cannot contain a NUL character.")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValidationError("A value must be valid text (UTF-8).") from error
    if len(encoded) > MAX_VALUE_BYTES:
        raise ValidationError(
            f"A value is at most {MAX_VALUE_BYTES // 1024} KiB. Store larger data in a file "
            "of your app instead."
        )
    return value


async def _load(conn: Connection, project_id: int) -> list[EnvVar]:
    rows = await conn.fetch(
        'SELECT name, value FROM project_env WHERE project_id = $1 ORDER BY name COLLATE "C"',
        project_id,
    )
    return [EnvVar(row["name"], row["value"]) for row in rows]


class EnvService:
    def __init__(self, pool: Pool, projects: ProjectService) -> None:
        self._pool = pool
        self._projects = projects

    async def list(
        self, actor: Actor, project: str, *, conn: Connection | None = None
    ) -> list[EnvVar]:
        """The project's variables, sorted by name (masked for an admin viewing as the user:
        a value is the user's secret)."""
        actor.require("read")
        found = await self._projects.resolve(actor, project, conn=conn)
        async with reading(self._pool, conn) as reader:
            loaded = await _load(reader, found.id)
        if not actor.sees_secrets:
            return [EnvVar(var.name, var.masked) for var in loaded]
        return loaded

    @records_refusals("env.set")
    async def set(
        self,
        actor: Actor,
        project: str,
        name: str,
        value: str,
        *,
        conn: Connection | None = None,
    ) -> EnvVar:
        """Add the variable, or change its value if the project has it already."""
        actor.require("env:write")
        name = validate_name(name)
        value = validate_value(value)
        found = await self._projects.resolve(actor, project, conn=conn)
        async with transaction(self._pool, conn) as tx:
            # Serialise the project's writes so the limit holds under concurrent adds.
            if not await projects_store.lock(tx, found.id, found.user_id):
                # deleted since the (cached) lookup
                raise NotFoundError(f"You have no project named {project[:40]!r}.")
            exists = await tx.fetchval(
                "SELECT 1 FROM project_env WHERE project_id = $1 AND name = $2", found.id, name
            )
            if exists is None:
                count = await tx.fetchval(
                    "SELECT count(*) FROM project_env WHERE project_id = $1", found.id
                )
                if count >= MAX_VARS:
                    raise ValidationError(
                        f"A project can have at most {MAX_VARS} variables. Unset one you no "
                        "longer need first."
                    )
            await tx.execute(
                "INSERT INTO project_env (project_id, name, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (project_id, name)"
                " DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                found.id,
                name,
                value,
            )
            # The name only: a value is a secret, and the log is read by more people.
            await audit.record(
                tx,
                actor,
                "env.set",
                audit.Target("project", found.name, found.id, found.user_id),
                metadata={"name": name, "change": "changed" if exists else "added"},
            )
        return EnvVar(name, value)

    @records_refusals("env.unset")
    async def unset(
        self, actor: Actor, project: str, name: str, *, conn: Connection | None = None
    ) -> None:
        actor.require("env:write")
        found = await self._projects.resolve(actor, project, conn=conn)
        async with transaction(self._pool, conn) as tx:
            deleted = await tx.fetchval(
                "DELETE FROM project_env WHERE project_id = $1 AND name = $2 RETURNING name",
                found.id,
                name.strip(),
            )
            if deleted is not None:
                await audit.record(
                    tx,
                    actor,
                    "env.unset",
                    audit.Target("project", found.name, found.id, found.user_id),
                    metadata={"name": deleted},
                )
        if deleted is None:
            raise NotFoundError(f"{project[:40]} has no variable named {name.strip()[:128]!r}.")

    async def as_mapping(self, project_id: int) -> dict[str, str]:
        """For the deployer: the project's variables, no ownership check (it owns nothing)."""
        async with reading(self._pool) as conn:
            return {var.name: var.value for var in await _load(conn, project_id)}
