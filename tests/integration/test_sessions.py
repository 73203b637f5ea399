"""Login sessions: signed tokens, server-side revocation, and what ends a session."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from core.db.migrations import discover, migrate
from core.errors import AuthenticationError
from core.panel import Panel
from tests.actors import SYSTEM, acting

PASSWORD = "correct horse battery"


async def test_open_verify_revoke(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    assert await panel.sessions.verify(session.token) == session.jti
    assert await panel.sessions.ended([session.jti]) == set()
    await panel.sessions.revoke(SYSTEM, session.jti)
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    with pytest.raises(AuthenticationError, match="session has ended"):
        await panel.sessions.verify(session.token)


async def test_log_out_everywhere_ends_only_that_users_sessions(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    alices = [await panel.sessions.open(alice.id, "publickey", "10.0.0.1") for _ in range(3)]
    bobs = await panel.sessions.open(bob.id, "password", "10.0.0.2")
    assert await panel.sessions.active_count(acting(alice.id)) == 3
    assert await panel.sessions.revoke_all(acting(alice.id)) == 3
    live = {session.jti for session in alices} | {bobs.jti}
    assert await panel.sessions.ended(live) == {session.jti for session in alices}
    assert await panel.sessions.active_count(acting(alice.id)) == 0


async def test_revoke_others_keeps_the_current_session(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    current, *others = [
        await panel.sessions.open(alice.id, "password", "10.0.0.1") for _ in range(3)
    ]
    assert await panel.sessions.revoke_others(acting(alice.id), current.jti) == 2
    everyone = {current.jti, *(session.jti for session in others)}
    assert await panel.sessions.ended(everyone) == {session.jti for session in others}


async def test_blocking_ends_sessions_and_unknown_jtis_count_as_ended(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    await panel.accounts.block(SYSTEM, "alice")
    stranger = uuid.uuid4()
    assert await panel.sessions.ended([session.jti, stranger]) == {session.jti, stranger}


async def test_expired_session_ends(panel: Panel) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert await panel.sessions.ended([session.jti]) == {session.jti}


async def test_migrations_twice_at_once_do_not_clash(postgres_server) -> None:  # type: ignore[no-untyped-def]
    admin = await asyncpg.connect(postgres_server.dsn())
    await admin.execute("DROP DATABASE IF EXISTS ghst_migrate_race")
    await admin.execute("CREATE DATABASE ghst_migrate_race")
    await admin.close()
    dsn = postgres_server.dsn("ghst_migrate_race")
    connections = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in connections))
        # Exactly one migrator applied each migration; the others found it done.
        applied = [migration.version for result in results for migration in result]
        assert sorted(applied) == [migration.version for migration in discover()]
        rows = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == sorted(applied)
        assert await migrate(connections[0]) == []  # running again is a no-op
    finally:
        for conn in connections:
            await conn.close()
