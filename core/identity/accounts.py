"""Accounts: sign-up, password login, password change, block/unblock."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection

import asyncpg

from core.actor import Actor
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from core.identity import users
from core.identity.keys import KeyService, PublicKey
from core.identity.passwords import PasswordHasher
from core.identity.sessions import SessionService
from core.identity.throttle import LoginThrottle
from core.identity.users import User as User

USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{2,31}$")
# Pragmatic: one @, a dot in the domain, no spaces; the real check is a mail that arrives.
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
# Generic on purpose: never tell whether the username exists.
BAD_CREDENTIALS = "Wrong username or password."


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


def require_operator(actor: Actor) -> None:
    """Blocking, unblocking, listing accounts and granting admin are operators' work."""
    if not actor.is_operator:
        raise PermissionDenied("This needs an administrator.")


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
        self,
        username: str,
        email: str,
        password: str,
        *,
        remote_addr: str | None = None,
        conn: Connection | None = None,
    ) -> User:
        """Create an account. `remote_addr`: the client's address, whose sign-ups are
        throttled; None for accounts an operator or a script creates."""
        username = validate_username(username.strip())
        email = validate_email(email)
        validate_password(password)
        if remote_addr is not None:
            await self._throttle.sign_up_attempt(remote_addr)
        password_hash = await self._hasher.hash(password)
        try:
            async with transaction(self._pool, conn) as tx:
                return await users.insert(tx, username, email, password_hash)
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == "users_email_key":
                raise ConflictError("That email address is already used by an account.") from error
            raise ConflictError(f"The username {username!r} is taken.") from error

    async def authenticate(self, username: str, password: str, remote_addr: str) -> User:
        """Check a password login, throttled per username and per address."""
        username = username.strip().lower()
        # Counted before bcrypt runs: parallel guesses cannot all pass a check made earlier.
        await self._throttle.attempt(username, remote_addr)
        try:
            async with reading(self._pool) as conn:
                found = await users.with_password_hash(conn, username)
        except BaseException:
            await self._throttle.give_back(username, remote_addr)
            raise
        stored_hash = found[1] if found else None
        if not await self._hasher.verify(password, stored_hash) or found is None:
            raise AuthenticationError(BAD_CREDENTIALS)
        user = found[0]
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
        actor: Actor,
        current: str,
        new: str,
        remote_addr: str,
        *,
        keep_session: uuid.UUID | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Change the actor's own password; wrong guesses of the current one count as failed
        logins. A token cannot: it would outlive the password it changed.

        Every login made with the old password ends (their SSH connections are closed), but
        `keep_session`, the one making the change; returns how many ended.
        """
        if actor.kind == "token":
            raise PermissionDenied("A token cannot change the account's password.")
        user_id = actor.owner_id
        validate_password(new)
        async with reading(self._pool, conn) as reader:
            found = await users.password_hash(reader, user_id)
        if found is None:
            raise NotFoundError("No such account.")
        username, stored_hash = found
        await self._throttle.attempt(username, remote_addr)
        if not await self._hasher.verify(current, stored_hash):
            raise AuthenticationError("Your current password is not right.")
        await self._throttle.succeeded(username, remote_addr)
        if current == new:
            raise ValidationError("The new password is the same as the current one.")
        new_hash = await self._hasher.hash(new)
        async with transaction(self._pool, conn) as tx:
            await users.set_password_hash(tx, user_id, new_hash)
            return await self._sessions.revoke_password_logins(actor, keep_session, conn=tx)

    async def get(self, user_id: int) -> User:
        """The account by id (logins and the session that already proved it)."""
        async with reading(self._pool) as conn:
            user = await users.get(conn, user_id)
        if user is None:
            raise NotFoundError("No such account.")
        return user

    async def find_by_username(self, username: str) -> User | None:
        async with reading(self._pool) as conn:
            return await users.by_username(conn, username.strip().lower())

    async def list(self, actor: Actor) -> list[User]:
        require_operator(actor)
        async with reading(self._pool) as conn:
            return await users.all_users(conn)

    async def blocked_among(self, user_ids: Collection[int]) -> set[int]:
        """Which of these accounts are blocked (one query, for the server's session watcher)."""
        if not user_ids:
            return set()
        async with reading(self._pool) as conn:
            return await users.blocked_among(conn, user_ids)

    async def set_admin(
        self, actor: Actor, username: str, is_admin: bool, *, conn: Connection | None = None
    ) -> User:
        return await self.set_role(actor, username, "admin" if is_admin else "user", conn=conn)

    async def set_role(
        self, actor: Actor, username: str, role: str, *, conn: Connection | None = None
    ) -> User:
        """Grant a role (user, operator, admin). The account's logins end: a session opened
        with the old role must not keep its screens or lose them halfway."""
        require_operator(actor)
        checked = users.role_named(role)
        if checked is None:
            raise ValidationError(f"A role is one of {', '.join(users.ROLES)}, not {role[:20]!r}.")
        async with transaction(self._pool, conn) as tx:
            target = _named(username, await users.by_username(tx, _username(username)))
            if target.id == actor.user_id:
                raise PermissionDenied("You cannot change your own role: ask another admin.")
            user = _named(username, await users.set_role(tx, target.username, checked))
            await self._sessions.revoke_all(actor, owner_id=user.id, conn=tx)
        return user

    async def block(self, actor: Actor, username: str, *, conn: Connection | None = None) -> User:
        """Admin: refuse new logins and end the user's live sessions (the SSH server polls)."""
        require_operator(actor)
        async with transaction(self._pool, conn) as tx:
            user = _named(username, await users.set_blocked(tx, _username(username), True))
            await self._sessions.revoke_all(actor, owner_id=user.id, conn=tx)
        return user

    async def unblock(self, actor: Actor, username: str, *, conn: Connection | None = None) -> User:
        require_operator(actor)
        async with transaction(self._pool, conn) as tx:
            return _named(username, await users.set_blocked(tx, _username(username), False))


def _username(username: str) -> str:
    return username.strip().lower()


def _named(username: str, user: User | None) -> User:
    if user is None:
        raise NotFoundError(f"No account named {username!r}.")
    return user
