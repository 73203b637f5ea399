"""Access tokens against PostgreSQL and Redis: what is stored, what a login with one gets, and
the attacks a hostile tenant or a thief would try."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    ThrottledError,
    ValidationError,
)
from core.identity.access_tokens import (
    SECRET_LENGTH,
    SECRET_PREFIX,
    CreatedToken,
    looks_like_token,
    parse_lifetime,
    parse_scopes,
)
from core.identity.accounts import User, deploy_key_actor
from core.identity.keys import parse_public_key
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.e2e.helpers import new_key, public_line

PASSWORD = "correct horse battery"
ADDR = "10.0.0.9"


async def user(panel: Panel, name: str) -> User:
    return await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD)


async def token(
    panel: Panel, owner: User, name: str = "ci", scopes: str = "read,deploy", **options: object
) -> CreatedToken:
    return await panel.access_tokens.create(
        acting(owner),
        name,
        parse_scopes(scopes),
        **options,  # type: ignore[arg-type]
    )


async def test_the_secret_is_shown_once_and_stored_only_as_a_hash(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    assert created.secret.startswith(SECRET_PREFIX)
    assert len(created.secret) == len(SECRET_PREFIX) + SECRET_LENGTH
    assert looks_like_token(created.secret)
    assert created.secret.startswith(created.token.prefix)
    [listed] = await panel.access_tokens.list(acting(alice))
    assert listed == created.token
    assert created.secret not in repr(listed)
    async with panel.pool.acquire() as conn:
        stored = await conn.fetch("SELECT * FROM access_tokens")
        logins = await conn.fetch("SELECT * FROM sessions")
    dumped = repr([dict(row) for row in stored]) + repr([dict(row) for row in logins])
    assert created.secret not in dumped
    assert created.secret[len(created.token.prefix) :] not in dumped
    # Two tokens never share a secret.
    other = await token(panel, alice, "other")
    assert other.secret != created.secret


async def test_expiry_defaults_to_90_days_and_at_most_a_year(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    lifetime = created.token.expires_at - created.token.created_at
    assert lifetime == timedelta(days=90)
    year = await token(panel, alice, "year", lifetime=parse_lifetime("365d"))
    assert year.token.expires_at - year.token.created_at == timedelta(days=365)
    for refused in (timedelta(days=366), timedelta(0), timedelta(days=-1)):
        with pytest.raises(ValidationError):
            await token(panel, alice, "long", lifetime=refused)
    assert parse_lifetime("2w") == timedelta(days=14)
    assert parse_lifetime("12h") == timedelta(hours=12)
    with pytest.raises(ValidationError):
        parse_lifetime("forever")
    with pytest.raises(ValidationError, match="Unknown scope"):
        parse_scopes("read,root")
    with pytest.raises(ValidationError):
        await token(panel, alice, "bad/name")


async def test_a_login_with_a_token_acts_within_its_scopes_and_projects(panel: Panel) -> None:
    alice = await user(panel, "alice")
    for name in ("shop", "diary"):
        await panel.projects.create(acting(alice), name)
    created = await token(panel, alice, scopes="read,logs", projects=["shop"])
    login = await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    actor = login.actor
    assert login.user.id == alice.id
    assert (actor.kind, actor.token_id) == ("token", created.token.id)
    assert actor.scopes == {"read", "logs"}
    assert actor.projects == {"shop"}
    assert created.token.prefix in actor.label and created.secret not in actor.label
    assert [p.name for p in await panel.projects.list(actor)] == ["shop"]
    with pytest.raises(PermissionDenied):
        await panel.projects.get(actor, "diary")
    with pytest.raises(PermissionDenied, match="deploy"):
        await panel.projects.create(actor, "new")


async def test_last_use_is_written_at_most_once_a_minute(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    assert created.token.last_used_at is None
    await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    [first] = await panel.access_tokens.list(acting(alice))
    assert first.last_used_at is not None
    await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    [again] = await panel.access_tokens.list(acting(alice))
    assert again.last_used_at == first.last_used_at
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE access_tokens SET last_used_at = now() - interval '2 minutes'")
    await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    [later] = await panel.access_tokens.list(acting(alice))
    assert later.last_used_at is not None and later.last_used_at > first.last_used_at


async def test_revoked_and_expired_tokens_are_refused(panel: Panel) -> None:
    alice = await user(panel, "alice")
    revoked = await token(panel, alice, "old")
    await panel.access_tokens.revoke(acting(alice), "old")
    with pytest.raises(AuthenticationError, match="Wrong username or password"):
        await panel.access_tokens.authenticate("alice", revoked.secret, ADDR)
    expired = await token(panel, alice, "expired")
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE access_tokens SET created_at = now() - interval '2 days',"
            " expires_at = now() - interval '1 second' WHERE id = $1",
            expired.token.id,
        )
    with pytest.raises(AuthenticationError, match="Wrong username or password"):
        await panel.access_tokens.authenticate("alice", expired.secret, ADDR)
    # Revoked tokens leave the list (and free their name); expired ones say so.
    assert [t.name for t in await panel.access_tokens.list(acting(alice))] == ["expired"]
    assert not (await panel.access_tokens.list(acting(alice)))[0].is_live(datetime.now(UTC))
    assert len(await panel.access_tokens.list(acting(alice), include_revoked=True)) == 2
    again = await token(panel, alice, "old")
    assert (await panel.access_tokens.authenticate("alice", again.secret, ADDR)).user.id == alice.id


async def test_a_token_logs_in_only_its_own_account(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await user(panel, "bob")
    created = await token(panel, alice)
    for username in ("bob", "nobody"):
        with pytest.raises(AuthenticationError, match="Wrong username or password"):
            await panel.access_tokens.authenticate(username, created.secret, ADDR)


async def test_names_are_per_account_and_another_tenant_cannot_revoke(panel: Panel) -> None:
    alice = await user(panel, "alice")
    bob = await user(panel, "bob")
    alices = await token(panel, alice, "ci")
    await token(panel, bob, "ci")  # the same name on another account is fine
    with pytest.raises(ConflictError):
        await token(panel, alice, "ci")
    with pytest.raises(NotFoundError):
        await panel.access_tokens.revoke(acting(bob), "missing")
    await panel.access_tokens.revoke(acting(bob), "ci")  # bob's own, not alice's
    assert [t.name for t in await panel.access_tokens.list(acting(alice))] == ["ci"]
    assert (await panel.access_tokens.authenticate("alice", alices.secret, ADDR)).user == alice
    # Another account's id in owner_id reads as no such account.
    with pytest.raises(NotFoundError):
        await panel.access_tokens.list(acting(bob), owner_id=alice.id)
    with pytest.raises(NotFoundError):
        await panel.access_tokens.revoke(acting(bob), "ci", owner_id=alice.id)
    # An operator may act for the account.
    await panel.access_tokens.revoke(SYSTEM, "ci", owner_id=alice.id)
    assert await panel.access_tokens.list(acting(alice)) == []


async def test_a_token_cannot_manage_tokens(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice, scopes="read,logs,deploy,env:write,admin")
    actor = (await panel.access_tokens.authenticate("alice", created.secret, ADDR)).actor
    with pytest.raises(PermissionDenied, match="token cannot"):
        await panel.access_tokens.create(actor, "wider", {"read"}, lifetime=timedelta(days=365))
    with pytest.raises(PermissionDenied):
        await panel.access_tokens.list(actor)
    with pytest.raises(PermissionDenied):
        await panel.access_tokens.revoke(actor, "ci")


async def test_the_admin_scope_counts_only_for_admins(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await user(panel, "bob")
    created = await token(panel, alice, scopes="read,admin")
    actor = (await panel.access_tokens.authenticate("alice", created.secret, ADDR)).actor
    assert "admin" not in actor.scopes and not actor.is_operator
    await panel.accounts.set_admin(SYSTEM, "alice", True)
    actor = (await panel.access_tokens.authenticate("alice", created.secret, ADDR)).actor
    assert actor.is_operator


async def test_projects_must_be_the_owners(panel: Panel) -> None:
    alice = await user(panel, "alice")
    bob = await user(panel, "bob")
    await panel.projects.create(acting(bob), "bobs")
    with pytest.raises(NotFoundError):
        await token(panel, alice, projects=["bobs"])
    with pytest.raises(NotFoundError):
        await token(panel, alice, projects=["nothing"])
    assert await panel.access_tokens.list(acting(alice)) == []


async def test_guessing_tokens_is_throttled_like_passwords(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    limit = panel.settings.login_max_failures
    for attempt in range(limit):
        guess = SECRET_PREFIX + f"{attempt:0{SECRET_LENGTH}d}"
        with pytest.raises(AuthenticationError):
            await panel.access_tokens.authenticate("alice", guess, ADDR)
    with pytest.raises(ThrottledError):
        await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    # Password guesses and token guesses share the budget.
    with pytest.raises(ThrottledError):
        await panel.accounts.authenticate("alice", PASSWORD, ADDR)


async def test_a_lookalike_with_the_same_prefix_is_refused(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    rest = created.secret[len(created.token.prefix) :]
    flipped = created.token.prefix + ("A" if rest[0] != "A" else "B") + rest[1:]
    for forged in (flipped, created.token.prefix, created.secret + "x", created.secret.upper()):
        with pytest.raises(AuthenticationError):
            await panel.access_tokens.authenticate("alice", forged, ADDR)


async def test_revoking_ends_the_logins_made_with_the_token(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    other = await token(panel, alice, "other")
    login = await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    with_token = await panel.access_tokens.open_login(login, "token", ADDR)
    other_login = await panel.access_tokens.authenticate("alice", other.secret, ADDR)
    with_other = await panel.access_tokens.open_login(other_login, "token", ADDR)
    with_password = await panel.sessions.open(alice.id, "password", ADDR)
    await panel.access_tokens.revoke(acting(alice), "ci")
    everyone = {with_token.jti, with_other.jti, with_password.jti}
    assert await panel.sessions.ended(everyone) == {with_token.jti}


async def test_a_token_revoked_before_its_login_opens_gets_no_login(panel: Panel) -> None:
    """Checked, then revoked before the connection's login row is written: refused."""
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    login = await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    await panel.access_tokens.revoke(acting(alice), "ci")
    with pytest.raises(AuthenticationError, match="revoked or has expired"):
        await panel.access_tokens.open_login(login, "token", ADDR)
    async with panel.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sessions") == 0


async def test_a_login_ends_when_its_token_expires(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice, lifetime=timedelta(hours=1))
    login = await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    session = await panel.access_tokens.open_login(login, "token", ADDR)
    assert session.expires_at == created.token.expires_at
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE access_tokens SET created_at = now() - interval '2 hours',"
            " expires_at = now() - interval '1 second'"
        )
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    with pytest.raises(AuthenticationError):
        await panel.access_tokens.open_login(login, "token", ADDR)


async def test_a_blocked_accounts_token_is_refused(panel: Panel) -> None:
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    await panel.accounts.block(SYSTEM, "alice")
    with pytest.raises(AuthenticationError, match="blocked"):
        await panel.access_tokens.authenticate("alice", created.secret, ADDR)


async def test_the_secret_is_never_logged(panel: Panel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alice = await user(panel, "alice")
    created = await token(panel, alice)
    await panel.access_tokens.authenticate("alice", created.secret, ADDR)
    with pytest.raises(AuthenticationError):
        await panel.access_tokens.authenticate("bob", created.secret, ADDR)
    assert created.secret not in caplog.text


async def test_deploy_keys_are_limited_like_tokens(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.projects.create(acting(alice), "shop")
    line = parse_public_key(public_line(new_key()))
    key = await panel.keys.add_parsed(acting(alice), line, "ci", projects=["shop"])
    assert (key.scopes, key.projects, key.is_deploy_key) == ({"read", "deploy"}, {"shop"}, True)
    user_found, registered = await panel.accounts.key_login(line)
    actor = deploy_key_actor(user_found, registered)
    assert actor is not None and actor.kind == "token"
    assert (actor.scopes, actor.projects) == ({"read", "deploy"}, {"shop"})
    with pytest.raises(PermissionDenied):
        await panel.access_tokens.create(actor, "wider", {"read"})
    with pytest.raises(PermissionDenied):
        await panel.keys.add_parsed(actor, line, "more")
    for scopes in (["admin"], ["root"], []):
        with pytest.raises(ValidationError):
            await panel.keys.add_parsed(acting(alice), line, "x", scopes=scopes)
    await panel.keys.remove(acting(alice), key.id)
    plain = await panel.keys.add_parsed(acting(alice), line, "plain")
    assert not plain.is_deploy_key
    found_user, found = await panel.accounts.key_login(line)
    assert deploy_key_actor(found_user, found) is None
