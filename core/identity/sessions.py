"""Login sessions: one row per login, identified by the JWT's jti, revocable server-side."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from core.actor import Actor
from core.audit import entries as audit
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import AuthenticationError
from core.identity import users
from core.identity.tokens import TokenSigner

# How a login proved the password (SSH password or keyboard-interactive, the dashboard's form).
PASSWORD_METHODS = ("password", "keyboard-interactive")


@dataclass(frozen=True)
class Session:
    jti: uuid.UUID
    user_id: int
    token: str
    auth_method: str
    remote_addr: str
    expires_at: datetime


@dataclass(frozen=True)
class OpenSession:
    """A login as the admin app lists it: where from, since when, how (never its token)."""

    remote_addr: str
    created_at: datetime
    auth_method: str  # password, publickey, token, signup...
    expires_at: datetime


async def open_sessions_of(conn: Connection, user_id: int) -> list[OpenSession]:
    """An account's logins that are neither revoked nor expired, newest first."""
    rows = await conn.fetch(
        "SELECT remote_addr, created_at, auth_method, expires_at FROM sessions"
        " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()"
        " ORDER BY created_at DESC",
        user_id,
    )
    return [OpenSession(**dict(row)) for row in rows]


class SessionService:
    def __init__(self, pool: Pool, signer: TokenSigner) -> None:
        self._pool = pool
        self._signer = signer

    async def open(
        self,
        user_id: int,
        auth_method: str,
        remote_addr: str,
        *,
        access_token_id: int | None = None,
        ends_by: datetime | None = None,
        actor: Actor | None = None,
        conn: Connection | None = None,
    ) -> Session:
        """Record a login that just proved itself (there is no actor before it). A login made
        with an access token names it (revoking the token ends the login) and ends no later
        than the token expires (`ends_by`). `actor`: who logged in, as the front end sees them
        (origin, request id), for the audit entry."""
        token, claims = self._signer.issue(user_id)
        expires_at = claims.expires_at if ends_by is None else min(claims.expires_at, ends_by)
        async with transaction(self._pool, conn) as tx:
            await tx.execute(
                "INSERT INTO sessions"
                " (jti, user_id, auth_method, remote_addr, expires_at, access_token_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                claims.jti,
                user_id,
                auth_method,
                remote_addr,
                expires_at,
                access_token_id,
            )
            if actor is None:
                account = await users.get(tx, user_id)
                name = account.username if account else f"user #{user_id}"
                actor = Actor("user", user_id, name).acting_from("ssh", source_address=remote_addr)
            await audit.record(
                tx,
                actor,
                "login",
                audit.Target("account", actor.label, user_id, user_id),
                metadata={"method": auth_method, "session": str(claims.jti)},
            )
        return Session(claims.jti, user_id, token, auth_method, remote_addr, expires_at)

    async def verify(self, token: str) -> uuid.UUID:
        """The jti of a token that is signed, unexpired, unrevoked and of an unblocked user."""
        claims = self._signer.decode(token)
        if await self.ended([claims.jti]):
            raise AuthenticationError("Your session has ended. Please log in again.")
        return claims.jti

    async def revoke(self, actor: Actor, jti: uuid.UUID, *, conn: Connection | None = None) -> None:
        """End one of the actor's sessions (log out); another account's is left alone."""
        actor.require_change()
        actor.refuse_token("end a login session")
        async with transaction(self._pool, conn) as tx:
            await tx.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE jti = $1 AND revoked_at IS NULL AND ($2::bigint IS NULL OR user_id = $2)",
                jti,
                None if actor.is_operator else actor.owner_id,
            )

    async def revoke_token_logins(
        self, actor: Actor, access_token_id: int, *, conn: Connection | None = None
    ) -> int:
        """End the logins made with one access token (it was revoked): each revoked row
        publishes a `session` event, on which the SSH server closes those connections."""
        actor.require_change()
        async with transaction(self._pool, conn) as tx:
            result: str = await tx.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE access_token_id = $1 AND revoked_at IS NULL"
                " AND ($2::bigint IS NULL OR user_id = $2)",
                access_token_id,
                None if actor.is_operator else actor.owner_id,
            )
        return int(result.split()[-1])

    async def revoke_all(
        self, actor: Actor, *, owner_id: int | None = None, conn: Connection | None = None
    ) -> int:
        """Log the account out everywhere (the actor's own, or `owner_id`'s for an operator);
        returns how many sessions were open. A token never ends its own account's logins (a
        leaked one cannot lock the person out); an admin's `admin` token blocking another
        account ends that account's."""
        actor.require_change()
        if owner_id is None or owner_id == actor.user_id:
            actor.refuse_token("end login sessions")
        user_id = actor.on_behalf_of(owner_id)
        async with transaction(self._pool, conn) as tx:
            result: str = await tx.execute(
                "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
                user_id,
            )
        return int(result.split()[-1])

    async def revoke_others(
        self, actor: Actor, keep: uuid.UUID, *, conn: Connection | None = None
    ) -> int:
        """End every session of the actor's account but `keep` (e.g. after a password change)."""
        actor.require_change()
        actor.refuse_token("end login sessions")
        async with transaction(self._pool, conn) as tx:
            result: str = await tx.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE user_id = $1 AND jti <> $2 AND revoked_at IS NULL",
                actor.owner_id,
                keep,
            )
        return int(result.split()[-1])

    async def revoke_password_logins(
        self, actor: Actor, keep: uuid.UUID | None = None, *, conn: Connection | None = None
    ) -> int:
        """End the actor's sessions that were opened with the password (it just changed), but
        `keep`; returns how many were open."""
        actor.require_change()
        actor.refuse_token("end login sessions")
        async with transaction(self._pool, conn) as tx:
            result: str = await tx.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE user_id = $1 AND revoked_at IS NULL AND auth_method = ANY($2::text[])"
                " AND jti IS DISTINCT FROM $3",
                actor.owner_id,
                list(PASSWORD_METHODS),
                keep,
            )
        return int(result.split()[-1])

    async def ended(self, jtis: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these sessions must end now: revoked, expired, or their user blocked.

        Two queries for all live sessions of a server, so polling it each second stays cheap.
        """
        if not jtis:
            return set()
        async with reading(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT wanted.jti, s.user_id,"
                " (s.jti IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= now()) AS over"
                " FROM unnest($1::uuid[]) AS wanted(jti)"
                " LEFT JOIN sessions s ON s.jti = wanted.jti",
                list(jtis),
            )
            live = {row["jti"]: row["user_id"] for row in rows if not row["over"]}
            blocked = await users.blocked_among(conn, set(live.values())) if live else set()
        return {row["jti"] for row in rows if row["over"] or live[row["jti"]] in blocked}

    async def open_count(self) -> int:
        """Open logins of every account (the admin app's system view)."""
        async with reading(self._pool) as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > now()"
            )
        return count

    async def active_count(self, actor: Actor) -> int:
        actor.refuse_token("see login sessions")
        async with reading(self._pool) as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL"
                " AND expires_at > now()",
                actor.owner_id,
            )
        return count
