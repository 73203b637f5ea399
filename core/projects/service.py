"""Projects: a name that becomes `<name>.<domain>`, owned by one user, cached in Redis.

Every read and write takes the acting user's id and only ever touches that user's rows; a
project of someone else is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg

from core.db.pool import Connection, Pool, connection
from core.errors import ConflictError, NotFoundError, ValidationError
from core.projects.cache import JsonCache

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


PROJECT_SELECT = """
SELECT p.id, p.user_id, p.name, p.created_at, p.app_port,
       count(a.version) AS versions, max(a.created_at) AS last_upload_at
FROM projects p LEFT JOIN archives a ON a.project_id = p.id
"""


def _row_to_project(row: asyncpg.Record) -> Project:
    return Project(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        created_at=row["created_at"],
        versions=row["versions"],
        last_upload_at=row["last_upload_at"],
        app_port=row["app_port"],
    )


class ProjectService:
    def __init__(self, pool: Pool, cache: JsonCache) -> None:
        self._pool = pool
        self._cache = cache

    async def create(self, user_id: int, name: str) -> Project:
        name = validate_project_name(name.strip())
        async with connection(self._pool) as conn, conn.transaction():
            # Serialise one user's creations so the per-user limit holds under races.
            await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
            count = await conn.fetchval("SELECT count(*) FROM projects WHERE user_id = $1", user_id)
            if count >= MAX_PROJECTS_PER_USER:
                raise ValidationError(
                    f"An account can have at most {MAX_PROJECTS_PER_USER} projects."
                )
            try:
                row = await conn.fetchrow(
                    "INSERT INTO projects (user_id, name) VALUES ($1, $2)"
                    " RETURNING id, user_id, name, created_at, app_port, 0 AS versions,"
                    " NULL::timestamptz AS last_upload_at",
                    user_id,
                    name,
                )
            except asyncpg.UniqueViolationError as error:
                raise ConflictError(
                    f"The name {name!r} is taken. Please choose another one."
                ) from error
        assert row is not None
        await self.invalidate(user_id)
        return _row_to_project(row)

    async def list(self, user_id: int) -> list[Project]:
        async def load() -> list[dict[str, Any]]:
            async with connection(self._pool) as conn:
                rows = await conn.fetch(
                    PROJECT_SELECT + " WHERE p.user_id = $1 GROUP BY p.id ORDER BY p.name",
                    user_id,
                )
            return [_row_to_project(row).to_json() for row in rows]

        cached = await self._cache.get_or_load(str(user_id), "list", load)
        return [Project.from_json(item) for item in cached]

    async def get(self, user_id: int, name: str) -> Project:
        """The user's project `name`; another user's project is not found, like a missing one."""

        async def load() -> dict[str, Any] | None:
            async with connection(self._pool) as conn:
                row = await conn.fetchrow(
                    PROJECT_SELECT + " WHERE p.user_id = $1 AND p.name = $2 GROUP BY p.id",
                    user_id,
                    name,
                )
            return _row_to_project(row).to_json() if row else None

        cached = await self._cache.get_or_load(str(user_id), f"project:{name}", load)
        if cached is None:
            raise NotFoundError(f"You have no project named {name[:40]!r}.")
        return Project.from_json(cached)

    async def delete(self, user_id: int, name: str, confirmation: str) -> Project:
        """Delete the project (its archive rows go with it); the caller removes stored files."""
        if confirmation.strip() != name:
            raise ValidationError(f"Type the project's name, {name!r}, to confirm deleting it.")
        project = await self.get(user_id, name)
        async with connection(self._pool) as conn:
            deleted = await conn.fetchval(
                "DELETE FROM projects WHERE id = $1 AND user_id = $2 RETURNING id",
                project.id,
                user_id,
            )
        await self.invalidate(user_id)
        if deleted is None:
            raise NotFoundError(f"You have no project named {name[:40]!r}.")
        return project

    async def set_app_port(self, user_id: int, name: str, port: int | None) -> Project:
        """Set the port the app listens on inside its container (None: automatic, from the
        image's EXPOSE, else 8080). The deployer reads it when it next creates containers, so
        it applies at the next deploy or restart."""
        port = validate_app_port(port)
        project = await self.get(user_id, name)
        async with connection(self._pool) as conn:
            updated = await conn.fetchval(
                "UPDATE projects SET app_port = $1 WHERE id = $2 AND user_id = $3 RETURNING id",
                port,
                project.id,
                user_id,
            )
        await self.invalidate(user_id)
        if updated is None:  # deleted in another session since `get`
            raise NotFoundError(f"You have no project named {name[:40]!r}.")
        return dataclasses.replace(project, app_port=port)

    async def invalidate(self, user_id: int) -> None:
        """Forget the cached list and details of the user's projects (after any write)."""
        await self._cache.invalidate(str(user_id))

    # --- what the deploy domain keeps on a project (its live deployment, stopped) -----------

    async def by_id(self, project_id: int, conn: Connection | None = None) -> Project | None:
        """Any owner's project (for the deploy worker, which acts for the panel)."""
        async with _using(self._pool, conn) as db:
            row = await db.fetchrow(PROJECT_SELECT + " WHERE p.id = $1 GROUP BY p.id", project_id)
        return _row_to_project(row) if row else None

    async def by_name(self, name: str) -> Project | None:
        """Any owner's project by its name (for operators; names are unique across users)."""
        async with _using(self._pool, None) as db:
            row = await db.fetchrow(PROJECT_SELECT + " WHERE p.name = $1 GROUP BY p.id", name)
        return _row_to_project(row) if row else None

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
