"""Projects: a name that becomes `<name>.<domain>`, owned by one user, cached in Redis.

Every read and write takes the actor and only ever touches rows it may own; a project of
someone else is "not found", exactly like one that does not exist. Reads need the "read" scope,
creating, deleting and changing the app port need "deploy". This module owns the `projects`
table: other domains lock or list projects' rows through its functions (`lock`, `ids_of_owner`).
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

import asyncpg

from core.actor import Actor
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.db.pool import Connection, Pool, connection
from core.db.unit import reading, transaction
from core.errors import ConflictError, NotFoundError, ValidationError
from core.identity import users
from core.projects.cache import JsonCache
from core.projects.holds import Holds

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
MAX_PROJECTS_PER_USER = 100
# Subdomains the panel, mail or DNS of an operator may need, and names that mislead.
MIN_APP_PORT, MAX_APP_PORT = 1, 65535
APP_PORT_RULES = (
    f"The app's port is a whole number from {MIN_APP_PORT} to {MAX_APP_PORT}, "
    "or empty to let the panel choose (the image's EXPOSE, else 8080)."
)
RESERVED_NAMES = frozenset(
    {
        "admin", "api", "app", "assets", "auth", "autoconfig", "autodiscover", "billing",
        "blog", "cdn", "console", "dashboard", "dev", "dns", "docs", "ftp", "ghst", "git",
        "help", "imap", "localhost", "login", "mail", "mx", "ns", "ns1", "ns2", "ns3",
        "panel", "pop", "pop3", "root", "sftp", "smtp", "ssh", "static", "status",
        "support", "webmail", "www",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Project:
    id: int
    user_id: int
    name: str
    created_at: datetime
    versions: int = 0
    last_upload_at: datetime | None = None
    # The port the app listens on inside its container; None: the image's EXPOSE, else 8080.
    app_port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "versions": self.versions,
            "last_upload_at": self.last_upload_at.isoformat() if self.last_upload_at else None,
            "app_port": self.app_port,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Project:
        last = data["last_upload_at"]
        return cls(
            id=data["id"],
            user_id=data["user_id"],
            name=data["name"],
            created_at=datetime.fromisoformat(data["created_at"]),
            versions=data["versions"],
            last_upload_at=datetime.fromisoformat(last) if last else None,
            # Entries cached before the setting existed have no key: automatic.
            app_port=data.get("app_port"),
        )


def validate_project_name(name: str) -> str:
    if not 3 <= len(name) <= 40:
        raise ValidationError("A project name is 3 to 40 characters long.")
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            "A project name uses lowercase letters, digits and hyphens, starts with a letter "
            "and does not end with a hyphen: it becomes the project's subdomain."
        )
    if "--" in name:
        raise ValidationError("A project name cannot contain two hyphens in a row.")
    if name in RESERVED_NAMES:
        raise ValidationError(f"The name {name!r} is reserved. Please choose another one.")
    return name


def validate_app_port(port: int | None) -> int | None:
    """`port` if it can be a container's port (None: automatic), else ValidationError."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValidationError(APP_PORT_RULES)
    if not MIN_APP_PORT <= port <= MAX_APP_PORT:
        raise ValidationError(APP_PORT_RULES)
    return port


def parse_app_port(text: str) -> int | None:
    """The app port typed by a user: empty means automatic; anything else must be a port."""
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise ValidationError(APP_PORT_RULES)
    return validate_app_port(int(text))


PROJECT_COLUMNS = "id, user_id, name, created_at, app_port"


class VersionCounts(Protocol):
    """How many versions each project has and when the last arrived: the archives' owner
    answers (projects cannot depend on archives, which depend on projects)."""

    async def __call__(
        self, conn: Connection, project_ids: list[int]
    ) -> dict[int, tuple[int, datetime | None]]: ...


def _row_to_project(row: asyncpg.Record, counts: dict[int, tuple[int, datetime | None]]) -> Project:
    versions, last_upload_at = counts.get(row["id"], (0, None))
    return Project(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        created_at=row["created_at"],
        versions=versions,
        last_upload_at=last_upload_at,
        app_port=row["app_port"],
    )


def not_found(name: str) -> NotFoundError:
    return NotFoundError(f"You have no project named {name[:40]!r}.")


async def lock(conn: Connection, project_id: int, owner_id: int | None = None) -> bool:
    """Lock the project's row for the caller's transaction (the lock that orders a project's
    versions, variables and deployments); False if it is gone (or not `owner_id`'s)."""
    found = await conn.fetchval(
        "SELECT id FROM projects WHERE id = $1 AND ($2::bigint IS NULL OR user_id = $2) FOR UPDATE",
        project_id,
        owner_id,
    )
    return found is not None


async def ids_of_owner(conn: Connection, user_id: int) -> list[int]:
    """The ids of every project of the account (its storage use sums their versions)."""
    rows = await conn.fetch("SELECT id FROM projects WHERE user_id = $1", user_id)
    return [int(row["id"]) for row in rows]


class ProjectService:
    def __init__(self, pool: Pool, cache: JsonCache, versions: VersionCounts) -> None:
        self._pool = pool
        self._cache = cache
        self._versions = versions
        # What billing attaches to refuse deploys, starts and uploads of a suspended project.
        self.holds = Holds()

    async def _load(self, conn: Connection, where: str, *args: object) -> list[Project]:
        rows = await conn.fetch(
            f"SELECT {PROJECT_COLUMNS} FROM projects WHERE {where} ORDER BY name", *args
        )
        counts = await self._versions(conn, [row["id"] for row in rows]) if rows else {}
        return [_row_to_project(row, counts) for row in rows]

    @records_refusals("project.create")
    async def create(
        self,
        actor: Actor,
        name: str,
        *,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> Project:
        """A new project of the actor's account (an operator may name another `owner_id`)."""
        actor.require("deploy")
        user_id = actor.on_behalf_of(owner_id)
        name = validate_project_name(name.strip())
        actor.require_project(name)
        try:
            async with transaction(self._pool, conn) as tx:
                # Serialise one user's creations so the per-user limit holds under races.
                if not await users.lock(tx, user_id):
                    raise NotFoundError("No such account.")
                count = await tx.fetchval(
                    "SELECT count(*) FROM projects WHERE user_id = $1", user_id
                )
                if count >= MAX_PROJECTS_PER_USER:
                    raise ValidationError(
                        f"An account can have at most {MAX_PROJECTS_PER_USER} projects."
                    )
                row = await tx.fetchrow(
                    f"INSERT INTO projects (user_id, name) VALUES ($1, $2)"
                    f" RETURNING {PROJECT_COLUMNS}",
                    user_id,
                    name,
                )
                assert row is not None
                await audit.record(
                    tx, actor, "project.create", audit.Target("project", name, row["id"], user_id)
                )
        except asyncpg.UniqueViolationError as error:
            raise ConflictError(
                f"The name {name!r} is taken. Please choose another one."
            ) from error
        assert row is not None
        await self.invalidate(user_id)
        return _row_to_project(row, {})

    async def list(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> list[Project]:
        """The account's projects by name (a token limited to some projects sees those)."""
        actor.require("read")
        user_id = actor.on_behalf_of(owner_id)
        if conn is not None:  # the caller's transaction may hold writes the cache never saw
            found = await self._load(conn, "user_id = $1", user_id)
        else:

            async def load() -> list[dict[str, Any]]:
                async with reading(self._pool) as reader:
                    loaded = await self._load(reader, "user_id = $1", user_id)
                return [project.to_json() for project in loaded]

            cached = await self._cache.get_or_load(str(user_id), "list", load)
            found = [Project.from_json(item) for item in cached]
        if actor.projects is not None:
            found = [project for project in found if project.name in actor.projects]
        return found

    async def get(self, actor: Actor, name: str, *, conn: Connection | None = None) -> Project:
        """The project `name`; another user's project is not found, like a missing one."""
        actor.require("read")
        return await self.resolve(actor, name, conn=conn)

    async def resolve(self, actor: Actor, name: str, *, conn: Connection | None = None) -> Project:
        """The project `name` if the actor may touch it, whatever the scope: for services
        that check the scope their own action needs (env writes, uploads, deploys)."""
        actor.require_project(name)
        if actor.is_operator:  # names are unique across accounts: no owner to filter on
            async with reading(self._pool, conn) as reader:
                found = await self._load(reader, "name = $1", name)
            if not found:
                raise not_found(name)
            return found[0]
        user_id = actor.owner_id
        if conn is not None:
            found = await self._load(conn, "user_id = $1 AND name = $2", user_id, name)
            if not found:
                raise not_found(name)
            return found[0]

        async def load() -> dict[str, Any] | None:
            async with reading(self._pool) as reader:
                loaded = await self._load(reader, "user_id = $1 AND name = $2", user_id, name)
            return loaded[0].to_json() if loaded else None

        cached = await self._cache.get_or_load(str(user_id), f"project:{name}", load)
        if cached is None:
            raise not_found(name)
        return Project.from_json(cached)

    @records_refusals("project.delete")
    async def delete(
        self, actor: Actor, name: str, confirmation: str, *, conn: Connection | None = None
    ) -> Project:
        """Delete the project (its archive rows go with it); the caller removes stored files."""
        actor.require("deploy")
        if confirmation.strip() != name:
            raise ValidationError(f"Type the project's name, {name!r}, to confirm deleting it.")
        project = await self.resolve(actor, name, conn=conn)
        async with transaction(self._pool, conn) as tx:
            deleted = await tx.fetchval(
                "DELETE FROM projects WHERE id = $1 AND user_id = $2 RETURNING id",
                project.id,
                project.user_id,
            )
            if deleted is not None:
                await audit.record(tx, actor, "project.delete", _target(project))
        await self.invalidate(project.user_id)
        if deleted is None:
            raise not_found(name)
        return project

    @records_refusals("project.app_port")
    async def set_app_port(
        self, actor: Actor, name: str, port: int | None, *, conn: Connection | None = None
    ) -> Project:
        """Set the port the app listens on inside its container (None: automatic, from the
        image's EXPOSE, else 8080). The deployer reads it when it next creates containers, so
        it applies at the next deploy or restart."""
        actor.require("deploy")
        port = validate_app_port(port)
        project = await self.resolve(actor, name, conn=conn)
        async with transaction(self._pool, conn) as tx:
            updated = await tx.fetchval(
                "UPDATE projects SET app_port = $1 WHERE id = $2 AND user_id = $3 RETURNING id",
                port,
                project.id,
                project.user_id,
            )
            if updated is not None:
                await audit.record(
                    tx,
                    actor,
                    "project.app_port",
                    _target(project),
                    metadata={"from": project.app_port, "to": port},
                )
        await self.invalidate(project.user_id)
        if updated is None:  # deleted in another session since `get`
            raise not_found(name)
        return dataclasses.replace(project, app_port=port)

    async def invalidate(self, user_id: int) -> None:
        """Forget the cached list and details of the user's projects (after any write; a
        caller whose transaction held the write calls it again once it commits)."""
        await self._cache.invalidate(str(user_id))

    # --- what the deploy domain keeps on a project (its live deployment, stopped) -----------

    async def by_id(self, project_id: int, conn: Connection | None = None) -> Project | None:
        """Any owner's project (for the deploy worker, which acts for the panel)."""
        async with _using(self._pool, conn) as db:
            found = await self._load(db, "id = $1", project_id)
        return found[0] if found else None

    async def by_name(self, name: str) -> Project | None:
        """Any owner's project by its name (for operators; names are unique across users)."""
        async with _using(self._pool, None) as db:
            found = await self._load(db, "name = $1", name)
        return found[0] if found else None

    async def lock(
        self, conn: Connection, project_id: int, *, live_id: int | None = None
    ) -> int | None:
        """Lock the project's row for the caller's transaction (serialises its deploys); its
        owner's id, or None if it is gone (or, with `live_id`, no longer live and running)."""
        if live_id is None:
            owner = await conn.fetchval(
                "SELECT user_id FROM projects WHERE id = $1 FOR UPDATE", project_id
            )
        else:
            owner = await conn.fetchval(
                "SELECT user_id FROM projects WHERE id = $1 AND live_deployment_id = $2"
                " AND NOT stopped FOR UPDATE",
                project_id,
                live_id,
            )
        return cast(int | None, owner)

    async def deploy_flags(
        self, project_ids: Sequence[int], conn: Connection | None = None
    ) -> dict[int, DeployFlags]:
        async with _using(self._pool, conn) as db:
            rows = await db.fetch(
                "SELECT id, name, live_deployment_id, stopped FROM projects"
                " WHERE id = any($1::bigint[])",
                project_ids,
            )
        return {
            r["id"]: DeployFlags(r["name"], r["live_deployment_id"], r["stopped"]) for r in rows
        }

    async def deploy_flags_of_user(self, user_id: int) -> dict[int, DeployFlags]:
        async with _using(self._pool, None) as db:
            rows = await db.fetch(
                "SELECT id, name, live_deployment_id, stopped FROM projects WHERE user_id = $1",
                user_id,
            )
        return {
            r["id"]: DeployFlags(r["name"], r["live_deployment_id"], r["stopped"]) for r in rows
        }

    async def live_deployment_ids(self, *, running_only: bool = False) -> builtins.list[int]:
        """Every project's live deployment (only those not stopped, with `running_only`)."""
        async with _using(self._pool, None) as db:
            rows = await db.fetch(
                "SELECT live_deployment_id FROM projects WHERE live_deployment_id IS NOT NULL"
                " AND NOT (stopped AND $1)",
                running_only,
            )
        return [row["live_deployment_id"] for row in rows]

    async def set_stopped(
        self, project_id: int, stopped: bool, conn: Connection | None = None
    ) -> None:
        async with _using(self._pool, conn) as db:
            await db.execute("UPDATE projects SET stopped = $2 WHERE id = $1", project_id, stopped)

    async def make_live(self, conn: Connection, project_id: int, deployment_id: int) -> int | None:
        """Route the project to `deployment_id` (started); the live deployment it replaces."""
        previous = await conn.fetchval(
            "SELECT live_deployment_id FROM projects WHERE id = $1 FOR UPDATE", project_id
        )
        await conn.execute(
            "UPDATE projects SET live_deployment_id = $2, stopped = false WHERE id = $1",
            project_id,
            deployment_id,
        )
        return cast(int | None, previous)


@dataclass(frozen=True)
class DeployFlags:
    """What the deploy domain keeps on a project row."""

    name: str
    live_id: int | None  # the deployment nginx routes to
    stopped: bool


@asynccontextmanager
async def _using(pool: Pool, conn: Connection | None) -> AsyncIterator[Connection]:
    """The caller's connection, or one from the pool."""
    if conn is not None:
        yield conn
        return
    async with connection(pool) as own:
        yield own


def _target(project: Project) -> audit.Target:
    """A project as the audit log names it: its owner sees the entry."""
    return audit.Target("project", project.name, project.id, project.user_id)
