"""Access tokens: secrets that log an account in for commands and file transfers (CI, scripts),
limited to scopes and maybe to some projects.

A secret is `ghst_` and 43 base62 characters (256 random bits). Only its SHA-256 is stored: a
secret that long cannot be guessed from its hash, so no slow hash is needed, and a login
finds its token by that hash in one indexed read. The first characters are kept as a prefix,
to tell tokens apart in lists and logs; nothing is looked up by it.

Tokens are managed by the person only (their password or key login, or an operator): a token
actor may not create, list or revoke tokens, so a leaked token can neither mint a longer-lived
or wider one nor hide itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from core.actor import SCOPES, Actor
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from core.identity import users
from core.identity.accounts import BAD_CREDENTIALS, User, record_failed_login
from core.identity.sessions import Session, SessionService
from core.identity.throttle import LoginThrottle

SECRET_PREFIX = "ghst_"
_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 43  # base62 characters: 43 * log2(62) > 256 bits
# What a token looks like: anything else given as a password is a password.
SECRET_PATTERN = re.compile(rf"^{SECRET_PREFIX}[A-Za-z0-9]{{{SECRET_LENGTH}}}$")
SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 6
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=365)
MAX_TOKENS_PER_USER = 50
MAX_PROJECTS_PER_TOKEN = 50
TOKEN_NAME_PATTERN = re.compile(r"^[\w.@+-][\w .@+:-]{0,63}$")
# A login writes `last_used_at` at most this often per token.
LAST_USED_EVERY = timedelta(minutes=1)
TOKEN_GONE = "This access token was revoked or has expired."
DURATION_PATTERN = re.compile(r"^\s*(\d{1,4})\s*([dhw]?)\s*$")
_UNIT_DAYS = {"": 1.0, "d": 1.0, "w": 7.0, "h": 1 / 24}


class ProjectLookup(Protocol):
    """The project service, as far as tokens need it: is this one of the actor's projects?"""

    async def get(self, actor: Actor, name: str, *, conn: Connection | None = ...) -> Any: ...


@dataclass(frozen=True)
class AccessToken:
    """A token as listed: never its secret."""

    id: int
    user_id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    projects: frozenset[str] | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True)
class CreatedToken:
    """A new token and its secret, shown once: it cannot be read back."""

    token: AccessToken
    secret: str


@dataclass(frozen=True)
class TokenLogin:
    """A login that a token proved: the account, the token, and what it may do."""

    user: User
    token: AccessToken
    actor: Actor


def looks_like_token(secret: str) -> bool:
    return SECRET_PATTERN.match(secret) is not None


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return SECRET_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def parse_lifetime(text: str) -> timedelta:
    """`90d`, `2w`, `12h` or a number of days: a token's lifetime, as the commands take it."""
    match = DURATION_PATTERN.match(text)
    if match is None:
        raise ValidationError(
            "Give the lifetime as a number of days, weeks or hours: 90d, 2w, 12h."
        )
    return timedelta(days=int(match.group(1)) * _UNIT_DAYS[match.group(2)])


def parse_scopes(text: str) -> frozenset[str]:
    """`read,deploy` (commas or spaces) as a set of known scopes."""
    scopes = frozenset(part for part in re.split(r"[\s,]+", text.strip()) if part)
    check_scopes(scopes)
    return scopes


def check_scopes(scopes: Collection[str]) -> None:
    if not scopes:
        raise ValidationError(f"Give a token at least one scope: {', '.join(sorted(SCOPES))}.")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValidationError(
            f"Unknown scope {unknown[0][:40]!r}: use {', '.join(sorted(SCOPES))}."
        )


def _row_to_token(row: asyncpg.Record) -> AccessToken:
    projects = row["projects"]
    return AccessToken(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=frozenset(row["scopes"]),
        projects=None if projects is None else frozenset(projects),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


TOKEN_COLUMNS = (
    "id, user_id, name, prefix, scopes, projects, created_at, expires_at, last_used_at, revoked_at"
)


async def live_tokens_of(conn: Connection, user_id: int) -> list[AccessToken]:
    """An account's live tokens (not revoked, not expired), newest first: the admin app's
    user details. A token as listed never holds its secret."""
    rows = await conn.fetch(
        f"SELECT {TOKEN_COLUMNS} FROM access_tokens"
        " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()"
        " ORDER BY created_at DESC, id DESC",
        user_id,
    )
    return [_row_to_token(row) for row in rows]


async def live_token_counts(conn: Connection, user_ids: list[int]) -> dict[int, int]:
    """How many live tokens each of these accounts holds (one query for a page of users)."""
    rows = await conn.fetch(
        "SELECT user_id, count(*) AS tokens FROM access_tokens"
        " WHERE user_id = any($1::bigint[]) AND revoked_at IS NULL AND expires_at > now()"
        " GROUP BY user_id",
        user_ids,
    )
    return {row["user_id"]: row["tokens"] for row in rows}


class AccessTokenService:
    def __init__(
        self,
        pool: Pool,
        throttle: LoginThrottle,
        sessions: SessionService,
        projects: ProjectLookup,
    ) -> None:
        self._pool = pool
        self._throttle = throttle
        self._sessions = sessions
        self._projects = projects

    @records_refusals("token.create", "token")
    async def create(
        self,
        actor: Actor,
        name: str,
        scopes: Collection[str],
        *,
        projects: Collection[str] | None = None,
        lifetime: timedelta | None = None,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> CreatedToken:
        """A new token of the actor's account (an operator may name another). The secret is
        in the result only; `projects` None means every project, now and later."""
        actor.require_change()
        actor.refuse_token("create access tokens")
        user_id = actor.on_behalf_of(owner_id)
        name = name.strip()
        if not TOKEN_NAME_PATTERN.match(name):
            raise ValidationError(
                "A token name is 1-64 letters, digits, spaces or . @ + : - _ characters."
            )
        wanted = frozenset(scopes)
        check_scopes(wanted)
        lifetime = DEFAULT_LIFETIME if lifetime is None else lifetime
        if lifetime <= timedelta(0):
            raise ValidationError("A token must live for some time: give a positive lifetime.")
        if lifetime > MAX_LIFETIME:
            raise ValidationError("A token lives at most 365 days: ask for a shorter lifetime.")
        limited = None if projects is None else sorted({p.strip() for p in projects})
        if limited is not None and not limited:
            raise ValidationError("Name at least one project, or none to allow every project.")
        if limited is not None and len(limited) > MAX_PROJECTS_PER_TOKEN:
            raise ValidationError(f"A token names at most {MAX_PROJECTS_PER_TOKEN} projects.")
        secret = new_secret()
        async with transaction(self._pool, conn) as tx:
            owner = Actor("user", user_id, actor.label)
            for project in limited or []:
                # Another account's project is not found, like one that does not exist.
                await self._projects.get(owner, project, conn=tx)
            count = await tx.fetchval(
                "SELECT count(*) FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL"
                " AND expires_at > now()",
                user_id,
            )
            if count >= MAX_TOKENS_PER_USER:
                raise ValidationError(
                    f"An account can have at most {MAX_TOKENS_PER_USER} live tokens: "
                    "revoke one first."
                )
            try:
                async with tx.transaction():
                    row = await tx.fetchrow(
                        "INSERT INTO access_tokens"
                        " (user_id, name, prefix, secret_hash, scopes, projects, expires_at)"
                        " VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)"
                        f" RETURNING {TOKEN_COLUMNS}",
                        user_id,
                        name,
                        secret[:SHOWN_PREFIX_LENGTH],
                        secret_hash(secret),
                        sorted(wanted),
                        limited,
                        lifetime,
                    )
            except asyncpg.UniqueViolationError as error:
                raise ConflictError(f"You already have a token named {name!r}.") from error
            assert row is not None  # INSERT ... RETURNING always yields the row
            # Names, scopes, projects and expiry: never the secret nor its hash.
            await audit.record(
                tx,
                actor,
                "token.create",
                audit.Target("token", name, row["id"], user_id),
                metadata={
                    "prefix": row["prefix"],
                    "scopes": sorted(wanted),
                    "projects": limited,
                    "expires_at": row["expires_at"].isoformat(),
                },
            )
        return CreatedToken(_row_to_token(row), secret)

    async def list(
        self,
        actor: Actor,
        *,
        owner_id: int | None = None,
        include_revoked: bool = False,
        conn: Connection | None = None,
    ) -> list[AccessToken]:
        """The account's tokens, newest first: live ones, and the expired (they say so)."""
        actor.refuse_token("list access tokens")
        user_id = actor.on_behalf_of(owner_id)
        async with reading(self._pool, conn) as reader:
            rows = await reader.fetch(
                f"SELECT {TOKEN_COLUMNS} FROM access_tokens"
                " WHERE user_id = $1 AND ($2 OR revoked_at IS NULL)"
                " ORDER BY created_at DESC, id DESC",
                user_id,
                include_revoked,
            )
        return [_row_to_token(row) for row in rows]

    @records_refusals("token.revoke", "token")
    async def revoke(
        self,
        actor: Actor,
        name: str,
        *,
        owner_id: int | None = None,
        conn: Connection | None = None,
    ) -> AccessToken:
        """Revoke one of the account's live tokens by name and end the logins made with it
        (in the same transaction: their `session` events close the connections)."""
        actor.require_change()
        actor.refuse_token("revoke access tokens")
        user_id = actor.on_behalf_of(owner_id)
        async with transaction(self._pool, conn) as tx:
            row = await tx.fetchrow(
                "UPDATE access_tokens SET revoked_at = now()"
                " WHERE user_id = $1 AND name = $2 AND revoked_at IS NULL"
                f" RETURNING {TOKEN_COLUMNS}",
                user_id,
                name.strip(),
            )
            if row is None:
                raise NotFoundError(f"No live token named {name.strip()[:64]!r} on your account.")
            await self._sessions.revoke_token_logins(actor, row["id"], conn=tx)
            await audit.record(
                tx,
                actor,
                "token.revoke",
                audit.Target("token", row["name"], row["id"], user_id),
                metadata={"prefix": row["prefix"]},
            )
        return _row_to_token(row)

    async def authenticate(self, username: str, secret: str, remote_addr: str) -> TokenLogin:
        """Check a token given as the password of `username`, throttled like passwords. Every
        refusal says the same as a wrong password: nothing tells a revoked, expired or
        another account's token from a made-up one."""
        username = username.strip().lower()
        await self._throttle.attempt(username, remote_addr)
        try:
            async with reading(self._pool) as conn:
                user = await users.by_username(conn, username)
                row = await conn.fetchrow(
                    f"SELECT {TOKEN_COLUMNS}, secret_hash, now() AS now FROM access_tokens"
                    " WHERE secret_hash = $1",
                    secret_hash(secret),
                )
        except BaseException:
            await self._throttle.give_back(username, remote_addr)
            raise
        if (
            user is None
            or row is None
            or not hmac.compare_digest(row["secret_hash"], secret_hash(secret))
            or row["user_id"] != user.id
            or row["revoked_at"] is not None
            or row["expires_at"] <= row["now"]
        ):
            wrong = AuthenticationError(BAD_CREDENTIALS)
            user_id = user.id if user is not None else None
            await record_failed_login(
                self._pool, username, user_id, remote_addr, "ssh", "failed", wrong, "token"
            )
            raise wrong
        if user.is_blocked:
            blocked = AuthenticationError("This account is blocked. Contact the operator.")
            await record_failed_login(
                self._pool, username, user.id, remote_addr, "ssh", "refused", blocked, "token"
            )
            raise blocked
        await self._throttle.succeeded(username, remote_addr)
        token = _row_to_token(row)
        await self._mark_used(token, row["now"])
        actor = Actor.for_token(
            user,
            token_id=token.id,
            prefix=token.prefix,
            scopes=token.scopes,
            projects=token.projects,
        )
        return TokenLogin(user, token, actor)

    async def open_login(self, login: TokenLogin, auth_method: str, remote_addr: str) -> Session:
        """The login session of a connection a token proved, opened only while the token is
        live. The token's row is locked (shared) meanwhile: a revocation racing this waits for
        it, then revokes the new session too; or it came first, and the login is refused."""
        async with transaction(self._pool) as tx:
            live = await tx.fetchval(
                "SELECT true FROM access_tokens"
                " WHERE id = $1 AND revoked_at IS NULL AND expires_at > now() FOR SHARE",
                login.token.id,
            )
            if not live:
                raise AuthenticationError(TOKEN_GONE)
            return await self._sessions.open(
                login.user.id,
                auth_method,
                remote_addr,
                access_token_id=login.token.id,
                ends_by=login.token.expires_at,
                actor=login.actor.acting_from("ssh", source_address=remote_addr),
                conn=tx,
            )

    async def _mark_used(self, token: AccessToken, now: datetime) -> None:
        """At most one write a minute per token: a CI job logging in in a loop stays cheap."""
        if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
            return
        async with transaction(self._pool) as tx:
            await tx.execute(
                "UPDATE access_tokens SET last_used_at = now() WHERE id = $1"
                " AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)",
                token.id,
                LAST_USED_EVERY,
            )


def expires_in(token: AccessToken, now: datetime | None = None) -> timedelta:
    return token.expires_at - (now or datetime.now(UTC))
