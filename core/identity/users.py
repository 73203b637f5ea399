"""The `users` table's one owner: every query on accounts' rows lives here.

Other modules (sign-up and login in `accounts`, sessions, project limits, the storage quota)
call these functions with a connection, so they can run inside their caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from core.db.pool import Connection

# A user; an operator reads everything in the admin app and changes nothing; an admin.
Role = Literal["user", "operator", "admin"]
ROLES: tuple[Role, ...] = ("user", "operator", "admin")


def role_named(text: str) -> Role | None:
    return next((role for role in ROLES if role == text), None)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    is_admin: bool
    created_at: datetime
    blocked_at: datetime | None
    role: Role = "user"

    @property
    def is_blocked(self) -> bool:
        return self.blocked_at is not None


USER_COLUMNS = "id, username, email, is_admin, created_at, blocked_at, role"


def row_to_user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        is_admin=row["is_admin"],
        created_at=row["created_at"],
        blocked_at=row["blocked_at"],
        role=row["role"],
    )


async def insert(conn: Connection, username: str, email: str, password_hash: str) -> User:
    """A new account; asyncpg.UniqueViolationError names the constraint a clash broke."""
    row = await conn.fetchrow(
        f"INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3)"
        f" RETURNING {USER_COLUMNS}",
        username,
        email,
        password_hash,
    )
    assert row is not None  # INSERT ... RETURNING always yields the row
    return row_to_user(row)


async def with_password_hash(conn: Connection, username: str) -> tuple[User, str] | None:
    row = await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1", username
    )
    return (row_to_user(row), row["password_hash"]) if row else None


async def password_hash(conn: Connection, user_id: int) -> tuple[str, str] | None:
    """(username, password hash) of the account."""
    row = await conn.fetchrow("SELECT username, password_hash FROM users WHERE id = $1", user_id)
    return (row["username"], row["password_hash"]) if row else None


async def set_password_hash(conn: Connection, user_id: int, new_hash: str) -> None:
    await conn.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
        user_id,
        new_hash,
    )


async def get(conn: Connection, user_id: int) -> User | None:
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return row_to_user(row) if row else None


async def by_username(conn: Connection, username: str) -> User | None:
    row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE username = $1", username)
    return row_to_user(row) if row else None


async def all_users(conn: Connection) -> list[User]:
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")
    return [row_to_user(row) for row in rows]


async def blocked_among(conn: Connection, user_ids: Collection[int]) -> set[int]:
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::bigint[]) AND blocked_at IS NOT NULL",
        list(user_ids),
    )
    return {row["id"] for row in rows}


async def set_role(conn: Connection, username: str, role: Role) -> User | None:
    """`is_admin` follows the role (a generated column, migration 0017)."""
    row = await conn.fetchrow(
        f"UPDATE users SET role = $2 WHERE username = $1 RETURNING {USER_COLUMNS}",
        username,
        role,
    )
    return row_to_user(row) if row else None


async def set_blocked(conn: Connection, username: str, blocked: bool) -> User | None:
    """Block (keeping the first block's time) or unblock the account."""
    row = await conn.fetchrow(
        "UPDATE users SET blocked_at = CASE WHEN $2 THEN coalesce(blocked_at, now()) END"
        f" WHERE username = $1 RETURNING {USER_COLUMNS}",
        username,
        blocked,
    )
    return row_to_user(row) if row else None


async def lock(conn: Connection, user_id: int, *, key_share: bool = False) -> bool:
    """Lock the account's row for the rest of the caller's transaction: the lock that orders
    one user's project creations (FOR UPDATE) and quota reservations (FOR NO KEY UPDATE, which
    rows referencing the user may still be inserted under). False: no such account."""
    strength = "NO KEY UPDATE" if key_share else "UPDATE"
    found = await conn.fetchval(f"SELECT id FROM users WHERE id = $1 FOR {strength}", user_id)
    return found is not None


async def storage_quota(conn: Connection, user_id: int, *, lock: bool = False) -> int | None:
    """The account's storage quota in bytes; `lock` takes the quota's lock (its row, FOR NO
    KEY UPDATE) for the caller's transaction. None: no such account."""
    quota: int | None = await conn.fetchval(
        "SELECT storage_quota_bytes FROM users WHERE id = $1"
        + (" FOR NO KEY UPDATE" if lock else ""),
        user_id,
    )
    return quota
