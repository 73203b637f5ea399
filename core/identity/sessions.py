"""Login sessions: one row per login, identified by the JWT's jti, revocable server-side."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from core.db.pool import Pool, connection
from core.errors import AuthenticationError
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


class SessionService:
    def __init__(self, pool: Pool, signer: TokenSigner) -> None:
        self._pool = pool
        self._signer = signer

    async def open(self, user_id: int, auth_method: str, remote_addr: str) -> Session:
        token, claims = self._signer.issue(user_id)
        async with connection(self._pool) as conn:
            await conn.execute(
                "INSERT INTO sessions (jti, user_id, auth_method, remote_addr, expires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                claims.jti,
                user_id,
                auth_method,
                remote_addr,
                claims.expires_at,
            )
        return Session(claims.jti, user_id, token, auth_method, remote_addr, claims.expires_at)

    async def verify(self, token: str) -> uuid.UUID:
        """The jti of a token that is signed, unexpired, unrevoked and of an unblocked user."""
        claims = self._signer.decode(token)
        if await self.ended([claims.jti]):
            raise AuthenticationError("Your session has ended. Please log in again.")
        return claims.jti

    async def revoke(self, jti: uuid.UUID) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE sessions SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL", jti
            )

    async def revoke_all(self, user_id: int) -> int:
        """Log the user out everywhere; returns how many sessions were open."""
        async with connection(self._pool) as conn:
            result: str = await conn.execute(
                "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
                user_id,
            )
        return int(result.split()[-1])

    async def revoke_others(self, user_id: int, keep: uuid.UUID) -> int:
        """End every session of the user but `keep` (e.g. after a password change)."""
        async with connection(self._pool) as conn:
            result: str = await conn.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE user_id = $1 AND jti <> $2 AND revoked_at IS NULL",
                user_id,
                keep,
            )
        return int(result.split()[-1])

    async def revoke_password_logins(self, user_id: int, keep: uuid.UUID | None = None) -> int:
        """End the user's sessions that were opened with the password (it just changed), but
        `keep`; returns how many were open."""
        async with connection(self._pool) as conn:
            result: str = await conn.execute(
                "UPDATE sessions SET revoked_at = now()"
                " WHERE user_id = $1 AND revoked_at IS NULL AND auth_method = ANY($2::text[])"
                " AND jti IS DISTINCT FROM $3",
                user_id,
                list(PASSWORD_METHODS),
                keep,
            )
        return int(result.split()[-1])

    async def ended(self, jtis: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these sessions must end now: revoked, expired, or their user blocked.

        One query for all live sessions of a server, so polling it each second stays cheap.
        """
        if not jtis:
            return set()
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT wanted.jti FROM unnest($1::uuid[]) AS wanted(jti)"
                " LEFT JOIN sessions s ON s.jti = wanted.jti"
                " LEFT JOIN users u ON u.id = s.user_id"
                " WHERE s.jti IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= now()"
                " OR u.blocked_at IS NOT NULL",
                list(jtis),
            )
        return {row["jti"] for row in rows}

    async def active_count(self, user_id: int) -> int:
        async with connection(self._pool) as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL"
                " AND expires_at > now()",
                user_id,
            )
        return count
