"""Accounts: sign-up, password login, password change, block/unblock."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.db.pool import Pool, connection
from core.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from core.identity.keys import KeyService, PublicKey
from core.identity.passwords import PasswordHasher
from core.identity.sessions import SessionService
from core.identity.throttle import LoginThrottle

USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{2,31}$")
# Pragmatic: one @, a dot in the domain, no spaces; the real check is a mail that arrives.
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
# Generic on purpose: never tell whether the username exists.
BAD_CREDENTIALS = "Wrong username or password."


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    is_admin: bool
    created_at: datetime
    blocked_at: datetime | None

    @property
    def is_blocked(self) -> bool:
        return self.blocked_at is not None


USER_COLUMNS = "id, username, email, is_admin, created_at, blocked_at"


def _row_to_user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        is_admin=row["is_admin"],
        created_at=row["created_at"],
        blocked_at=row["blocked_at"],
    )


def validate_username(username: str) -> str:
    if not 3 <= len(username) <= 32:
        raise ValidationError("A username is 3 to 32 characters long.")
    if not USERNAME_PATTERN.match(username):
        raise ValidationError(
            "A username uses lowercase letters, digits and hyphens, and starts with a letter."
        )
    return username


def validate_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL_PATTERN.match(email):
        raise ValidationError(f"{email[:60]!r} is not a valid email address.")
    return email


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"A password has at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"A password has at most {MAX_PASSWORD_LENGTH} characters.")
    if not password.strip():
        raise ValidationError("A password cannot be only spaces.")
    return password


class AccountService:
    def __init__(
        self,
        pool: Pool,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        sessions: SessionService,
        keys: KeyService,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._hasher = hasher
        self._throttle = throttle
        self._sessions = sessions

    async def sign_up(
        self, username: str, email: str, password: str, *, remote_addr: str | None = None
    ) -> User:
        """Create an account. `remote_addr`: the client's address, whose sign-ups are
        throttled; None for accounts an operator or a script creates."""
        username = validate_username(username.strip())
        email = validate_email(email)
        validate_password(password)
        if remote_addr is not None:
            await self._throttle.sign_up_attempt(remote_addr)
        password_hash = await self._hasher.hash(password)
        async with connection(self._pool) as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3)"
                    f" RETURNING {USER_COLUMNS}",
                    username,
                    email,
                    password_hash,
                )
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "users_email_key":
                    raise ConflictError(
                        "That email address is already used by an account."
                    ) from error
                raise ConflictError(f"The username {username!r} is taken.") from error
        assert row is not None  # INSERT ... RETURNING always yields the row
        return _row_to_user(row)

    async def authenticate(self, username: str, password: str, remote_addr: str) -> User:
        """Check a password login, throttled per username and per address."""
        username = username.strip().lower()
        # Counted before bcrypt runs: parallel guesses cannot all pass a check made earlier.
        await self._throttle.attempt(username, remote_addr)
        try:
            async with connection(self._pool) as conn:
                row = await conn.fetchrow(
                    f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1",
                    username,
                )
        except BaseException:
            await self._throttle.give_back(username, remote_addr)
            raise
        stored_hash = row["password_hash"] if row else None
        if not await self._hasher.verify(password, stored_hash) or row is None:
            raise AuthenticationError(BAD_CREDENTIALS)
        user = _row_to_user(row)
        if user.is_blocked:
            raise AuthenticationError("This account is blocked. Contact the operator.")
        await self._throttle.succeeded(username, remote_addr)
        return user

    async def authenticate_key(self, key: PublicKey) -> User:
        """The account this public key logs in."""
        user_id = await self._keys.find_owner(key)
        if user_id is None:
            raise AuthenticationError("This key is not registered to any account.")
        user = await self.get(user_id)
        if user.is_blocked:
            raise AuthenticationError("This account is blocked. Contact the operator.")
        return user

    async def change_password(
        self,
        user_id: int,
        current: str,
        new: str,
        remote_addr: str,
        *,
        keep_session: uuid.UUID | None = None,
    ) -> int:
        """Change the password; wrong guesses of the current one count as failed logins.

        Every login made with the old password ends (their SSH connections are closed), but
        `keep_session`, the one making the change; returns how many ended.
        """
        validate_password(new)
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT username, password_hash FROM users WHERE id = $1", user_id
            )
        if row is None:
            raise NotFoundError("No such account.")
        await self._throttle.attempt(row["username"], remote_addr)
        if not await self._hasher.verify(current, row["password_hash"]):
            raise AuthenticationError("Your current password is not right.")
        await self._throttle.succeeded(row["username"], remote_addr)
        if current == new:
            raise ValidationError("The new password is the same as the current one.")
        new_hash = await self._hasher.hash(new)
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1",
                user_id,
                new_hash,
            )
        return await self._sessions.revoke_password_logins(user_id, keep_session)

    async def get(self, user_id: int) -> User:
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
        if row is None:
            raise NotFoundError("No such account.")
        return _row_to_user(row)

    async def find_by_username(self, username: str) -> User | None:
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS} FROM users WHERE username = $1", username.strip().lower()
            )
        return _row_to_user(row) if row else None

    async def list(self) -> list[User]:
        async with connection(self._pool) as conn:
            rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")
        return [_row_to_user(row) for row in rows]

    async def blocked_among(self, user_ids: Collection[int]) -> set[int]:
        """Which of these accounts are blocked (one query, for the server's session watcher)."""
        if not user_ids:
            return set()
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT id FROM users WHERE id = ANY($1::bigint[]) AND blocked_at IS NOT NULL",
                list(user_ids),
            )
        return {row["id"] for row in rows}

    async def set_admin(self, username: str, is_admin: bool) -> User:
        return await self._update_by_username(
            username, "UPDATE users SET is_admin = $2 WHERE username = $1", is_admin
        )

    async def block(self, username: str) -> User:
        """Admin: refuse new logins and end the user's live sessions (the SSH server polls)."""
        user = await self._update_by_username(
            username,
            "UPDATE users SET blocked_at = coalesce(blocked_at, now()) WHERE username = $1",
        )
        await self._sessions.revoke_all(user.id)
        return user

    async def unblock(self, username: str) -> User:
        return await self._update_by_username(
            username, "UPDATE users SET blocked_at = NULL WHERE username = $1"
        )

    async def _update_by_username(self, username: str, sql: str, *args: object) -> User:
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                f"{sql} RETURNING {USER_COLUMNS}", username.strip().lower(), *args
            )
        if row is None:
            raise NotFoundError(f"No account named {username!r}.")
        return _row_to_user(row)
