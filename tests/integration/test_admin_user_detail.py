"""`:users`' details with the real services: a user's projects (state, plan), open sessions,
keys and live tokens (never a secret), the Tokens column, a constant number of queries
whatever the number of projects, and who may read them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.actor import Actor
from core.admin import read_models
from core.errors import NotFoundError, PermissionDenied
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.integration.test_view_as import people


async def test_the_details_of_a_user(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    await panel.access_tokens.create(acting(bob), "old", ["read"])
    await panel.access_tokens.revoke(acting(bob), "old")
    created = await panel.access_tokens.create(
        acting(bob), "deployer", ["deploy"], projects=["shop"], lifetime=timedelta(days=7)
    )
    detail = await panel.admin.user_detail(Actor.for_admin(alice), "Bob")
    assert detail.user.username == "bob"
    assert detail.user.balance_kopecks == 50_000
    assert [(p.name, p.state, p.plan) for p in detail.projects] == [("shop", "new", "free v1")]
    assert [(s.remote_addr, s.auth_method) for s in detail.sessions] == [("10.0.0.9", "password")]
    assert [k.name for k in detail.keys] == ["alice@laptop"]
    assert [(t.name, t.prefix, sorted(t.scopes), t.projects) for t in detail.tokens] == [
        ("deployer", created.token.prefix, ["deploy"], frozenset({"shop"})),
        ("ci", detail.tokens[1].prefix, ["deploy", "read"], None),
    ]
    assert created.secret not in repr(detail)
    assert detail.user.tokens == 2  # the revoked one is not counted
    [row] = await panel.admin.users(Actor.for_admin(alice), "bob")
    assert (row.keys, row.tokens, row.sessions) == (1, 2, 1)


async def test_an_operator_reads_details_and_a_user_cannot(panel: Panel) -> None:
    _, olga, bob = await people(panel)
    detail = await panel.admin.user_detail(Actor.for_staff(olga), "bob")
    assert [p.name for p in detail.projects] == ["shop"]
    with pytest.raises(PermissionDenied):
        await panel.admin.user_detail(acting(bob), "olga")
    with pytest.raises(PermissionDenied):
        await panel.admin.project_usage(acting(bob), "shop")
    with pytest.raises(NotFoundError):
        await panel.admin.user_detail(Actor.for_staff(olga), "nobody")


async def test_usage_against_the_plan_for_staff(panel: Panel) -> None:
    _, olga, _ = await people(panel)
    usage = await panel.admin.project_usage(Actor.for_staff(olga), "shop")
    assert (usage.project, usage.plan) == ("shop", "Free")
    assert usage.disk.limit is not None


async def test_the_details_cost_the_same_queries_with_many_projects(panel: Panel) -> None:
    _, _, bob = await people(panel)
    counted = []
    for extra in (0, 12):
        for number in range(extra):
            await panel.projects.create(SYSTEM, f"extra-{number}", owner_id=bob.id)
        statements: list[str] = []

        def log(record: Any, into: list[str] = statements) -> None:
            into.append(record.query)

        async with panel.pool.acquire() as conn:
            conn.add_query_logger(log)
            try:
                detail = await read_models.user_detail(conn, "bob")
            finally:
                conn.remove_query_logger(log)
        assert detail is not None
        counted.append((len(detail.projects), len(statements)))
    assert counted[1][0] == counted[0][0] + 12
    assert counted[0][1] == counted[1][1]
