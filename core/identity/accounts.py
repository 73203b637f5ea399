"""Accounts: sign-up, password login, password change, block/unblock."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection

import asyncpg

from core.actor import Actor, Origin
from core.audit import entries as audit
from core.audit.service import record_alone, records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    ThrottledError,
    ValidationError,
)
from core.identity import users
from core.identity.keys import KeyService, PublicKey, SSHKey
from core.identity.passwords import PasswordHasher
from core.identity.sessions import SessionService
from core.identity.throttle import LoginThrottle
from core.identity.users import User as User

log = logging.getLogger(__name__)

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


def deploy_key_actor(user: User, key: SSHKey) -> Actor | None:
    """Who acts for a login with a deploy key: like a token (no dashboard, no keys, no
    tokens), within the key's scopes and projects. None for an ordinary key."""
    if key.scopes is None:
        return None
    return Actor(
        "token",
        user.id,
        f"deploy key {key.name!r} of {user.username}",
        scopes=key.scopes - {"admin"},
        projects=key.projects,
    )


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

    async def authenticate(
        self, username: str, password: str, remote_addr: str, *, origin: Origin = "ssh"
    ) -> User:
        """Check a password login, throttled per username and per address. A failure is
        audited: for an existing account, that account sees it; for a name with no account,
        only operators do (nothing a user reads tells which names exist)."""
        username = username.strip().lower()
        # Counted before bcrypt runs: parallel guesses cannot all pass a check made earlier.
        try:
            await self._throttle.attempt(username, remote_addr)
        except ThrottledError as throttled:
            await self._login_failed(username, None, remote_addr, origin, "refused", throttled)
            raise
        try:
            async with reading(self._pool) as conn:
                found = await users.with_password_hash(conn, username)
        except BaseException:
            await self._throttle.give_back(username, remote_addr)
            raise
        stored_hash = found[1] if found else None
        if not await self._hasher.verify(password, stored_hash) or found is None:
            wrong = AuthenticationError(BAD_CREDENTIALS)
            user_id = found[0].id if found else None
            await self._login_failed(username, user_id, remote_addr, origin, "failed", wrong)
            raise wrong
        user = found[0]
        if user.is_blocked:
            blocked = AuthenticationError("This account is blocked. Contact the operator.")
            await self._login_failed(username, user.id, remote_addr, origin, "refused", blocked)
            raise blocked
        await self._throttle.succeeded(username, remote_addr)
        return user

    async def authenticate_key(self, key: PublicKey, remote_addr: str | None = None) -> User:
        """The account this public key logs in. A key no account has is not audited: clients
        offer every key they hold, one after the other, before a password."""
        return (await self.key_login(key, remote_addr))[0]

    async def key_login(
        self, key: PublicKey, remote_addr: str | None = None
    ) -> tuple[User, SSHKey]:
        """The account this public key logs in, and the key as registered (a deploy key's
        login is limited to its scopes and projects: `deploy_key_actor`)."""
        found = await self._keys.find(key)
        if found is None:
            raise AuthenticationError("This key is not registered to any account.")
        user = await self.get(found.user_id)
        if user.is_blocked:
            error = AuthenticationError("This account is blocked. Contact the operator.")
            await self._login_failed(user.username, user.id, remote_addr, "ssh", "refused", error)
            raise error
        return user, found

    async def _login_failed(
        self,
        username: str,
        user_id: int | None,
        remote_addr: str | None,
        origin: Origin,
        outcome: audit.Outcome,
        error: Exception,
    ) -> None:
        await record_failed_login(
            self._pool, username, user_id, remote_addr, origin, outcome, error
        )

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
        actor.require_change()
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

    @records_refusals("account.set_role", "account")
    async def set_role(
        self, actor: Actor, username: str, role: str, *, conn: Connection | None = None
    ) -> User:
        """Grant a role (user, operator, admin). The account's logins end: a session opened
        with the old role must not keep its screens or lose them halfway."""
        actor.require_change()
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
            await _audit_admin(
                tx, actor, "account.set_role", user, {"from": target.role, "to": checked}
            )
        return user

    @records_refusals("account.block", "account")
    async def block(self, actor: Actor, username: str, *, conn: Connection | None = None) -> User:
        """Admin: refuse new logins and end the user's live sessions (the SSH server polls)."""
        actor.require_change()
        require_operator(actor)
        async with transaction(self._pool, conn) as tx:
            user = _named(username, await users.set_blocked(tx, _username(username), True))
            closed = await self._sessions.revoke_all(actor, owner_id=user.id, conn=tx)
            await _audit_admin(tx, actor, "account.block", user, {"sessions_ended": closed})
        return user

    @records_refusals("account.unblock", "account")
    async def unblock(self, actor: Actor, username: str, *, conn: Connection | None = None) -> User:
        actor.require_change()
        require_operator(actor)
        async with transaction(self._pool, conn) as tx:
            user = _named(username, await users.set_blocked(tx, _username(username), False))
            await _audit_admin(tx, actor, "account.unblock", user, {})
            return user


def _username(username: str) -> str:
    return username.strip().lower()


def _named(username: str, user: User | None) -> User:
    if user is None:
        raise NotFoundError(f"No account named {username!r}.")
    return user


async def _audit_admin(
    conn: Connection, actor: Actor, action: str, user: User, metadata: dict[str, object]
) -> None:
    """An operator's action on an account: the account sees it in its own log."""
    await audit.record(
        conn,
        actor,
        action,
        audit.Target("account", user.username, user.id, user.id),
        metadata=metadata,
    )


async def record_failed_login(
    pool: Pool,
    username: str,
    user_id: int | None,
    remote_addr: str | None,
    origin: Origin,
    outcome: audit.Outcome,
    error: Exception,
    method: str | None = None,
) -> None:
    """Audit a failed or refused login, in its own transaction (capped per address or
    account, see core.audit.service); a failure to write it does not change the answer."""
    who = Actor("user", user_id, f"login as {username[:64]!r}", scopes=frozenset())
    metadata = {"reason": type(error).__name__}
    if method is not None:
        metadata["method"] = method
    try:
        await record_alone(
            pool,
            who.acting_from(origin, source_address=remote_addr),
            "login",
            audit.Target("account", username[:64], user_id, user_id),
            outcome,
            metadata,
        )
    except Exception as failure:
        log.warning("could not audit a failed login from %s: %s", remote_addr, failure)
