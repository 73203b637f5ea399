"""Unit of work against the real PostgreSQL: services' writes made on a caller's connection
commit or roll back with the caller's transaction; without one, each call commits alone."""

from __future__ import annotations

import pytest

from core.errors import ConflictError, NotFoundError, ValidationError
from core.panel import Panel
from tests.actors import acting
from tests.tui.fakes import key_line

PASSWORD = "correct horse battery"


class Abandoned(Exception):
    """The caller gives up after the services wrote."""


async def test_two_services_writes_roll_back_with_the_callers_transaction(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD))
    with pytest.raises(Abandoned):
        async with panel.pool.acquire() as conn, conn.transaction():
            await panel.projects.create(alice, "shop", conn=conn)
            # Seen inside the transaction: the variable lands on the uncommitted project.
            await panel.env.set(alice, "shop", "MODE", "live", conn=conn)
            assert [var.name for var in await panel.env.list(alice, "shop", conn=conn)] == ["MODE"]
            await panel.keys.add(alice, key_line("laptop"), conn=conn)
            raise Abandoned
    assert await panel.projects.list(alice) == []
    with pytest.raises(NotFoundError):
        await panel.env.list(alice, "shop")
    assert await panel.keys.list(alice) == []


async def test_two_services_writes_commit_together(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD))
    async with panel.pool.acquire() as conn, conn.transaction():
        await panel.projects.create(alice, "shop", conn=conn)
        await panel.env.set(alice, "shop", "MODE", "live", conn=conn)
        await panel.keys.add(alice, key_line("laptop"), conn=conn)
    assert [project.name for project in await panel.projects.list(alice)] == ["shop"]
    assert [var.name for var in await panel.env.list(alice, "shop")] == ["MODE"]
    assert [key.name for key in await panel.keys.list(alice)] == ["alice@laptop"]


async def test_a_refused_write_leaves_the_callers_other_writes_usable(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD))
    bob = acting(await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD))
    await panel.projects.create(bob, "taken")
    async with panel.pool.acquire() as conn, conn.transaction():
        await panel.projects.create(alice, "shop", conn=conn)
        # The clash happens in the service's savepoint: the caller's transaction goes on.
        with pytest.raises(ConflictError):
            await panel.projects.create(alice, "taken", conn=conn)
        await panel.env.set(alice, "shop", "MODE", "live", conn=conn)
    assert [project.name for project in await panel.projects.list(alice)] == ["shop"]
    assert [var.name for var in await panel.env.list(alice, "shop")] == ["MODE"]


async def test_without_a_connection_each_call_commits_on_its_own(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD))
    await panel.projects.create(alice, "shop")
    with pytest.raises(ValidationError):
        await panel.env.set(alice, "shop", "PORT", "80")  # refused: the project stays
    await panel.env.set(alice, "shop", "MODE", "live")
    with pytest.raises(NotFoundError):
        await panel.env.set(alice, "elsewhere", "MODE", "live")
    assert [project.name for project in await panel.projects.list(alice)] == ["shop"]
    assert [var.name for var in await panel.env.list(alice, "shop")] == ["MODE"]


async def test_a_port_given_in_a_rolled_back_transaction_stays_free(panel: Panel) -> None:
    alice = acting(await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD))
    project = await panel.projects.create(alice, "shop")
    async with panel.pool.acquire() as conn:
        deployment_id = await conn.fetchval(
            "INSERT INTO deployments (project_id, project_name, user_id, archive_name, reason)"
            " VALUES ($1, $2, $3, 'v1-app.zip', 'deploy') RETURNING id",
            project.id,
            project.name,
            project.user_id,
        )
        with pytest.raises(Abandoned):
            async with conn.transaction():
                port = await panel.ports.allocate(project.id, deployment_id, conn=conn)
                assert await panel.ports.held(project.id, conn=conn) == [port]
                raise Abandoned
    assert await panel.ports.held(project.id) == []
    port = await panel.ports.allocate(project.id, deployment_id)
    assert await panel.ports.held(project.id) == [port]
