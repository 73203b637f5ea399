"""The operators' app's core with the real services: roles, who may read and change what, and
the read models' searches, filters and pages (core/admin/, migration 0017)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from core.actor import Actor
from core.admin.read_models import ProjectFilter
from core.deploy.model import project_state
from core.errors import NotFoundError, PermissionDenied, ValidationError
from core.identity.accounts import User
from core.identity.keys import parse_public_key
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.integration.test_actor_rights import upload
from tests.tui.fakes import key_line

PASSWORD = "correct horse battery"


async def people(panel: Panel) -> tuple[User, User, User]:
    """alice (admin), olga (operator), bob (user) with a free project "shop" and a key."""
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.accounts.sign_up("olga", "olga@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    alice = await panel.accounts.set_role(SYSTEM, "alice", "admin")
    olga = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    await panel.subscriptions.create_project(acting(bob), "shop")
    await panel.keys.add(acting(bob), key_line("laptop"))
    return alice, olga, bob


async def test_a_role_is_granted_and_is_admin_follows_it(panel: Panel) -> None:
    alice, olga, bob = await people(panel)
    assert (alice.role, alice.is_admin) == ("admin", True)
    assert (olga.role, olga.is_admin) == ("operator", False)
    assert (bob.role, bob.is_admin) == ("user", False)
    demoted = await panel.accounts.set_admin(SYSTEM, "alice", False)
    assert (demoted.role, demoted.is_admin) == ("user", False)
    with pytest.raises(ValidationError, match="A role is one of"):
        await panel.accounts.set_role(SYSTEM, "bob", "root")
    with pytest.raises(NotFoundError):
        await panel.accounts.set_role(SYSTEM, "nobody", "admin")


async def test_the_database_refuses_a_role_it_does_not_know(panel: Panel) -> None:
    await people(panel)
    async with panel.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE users SET role = 'root' WHERE username = 'bob'")


async def test_a_role_change_ends_the_accounts_logins(panel: Panel) -> None:
    _, _, bob = await people(panel)
    session = await panel.sessions.open(bob.id, "password", "10.0.0.1")
    await panel.accounts.set_role(SYSTEM, "bob", "operator")
    assert await panel.sessions.ended([session.jti]) == {session.jti}


async def test_nobody_changes_their_own_role(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    with pytest.raises(PermissionDenied, match="your own role"):
        await panel.admin.set_role(Actor.for_staff(alice), "alice", "user")


async def test_staff_actors_come_from_the_role(panel: Panel) -> None:
    alice, olga, bob = await people(panel)
    assert Actor.for_staff(alice).kind == "admin"
    operator = Actor.for_staff(olga)
    assert operator.kind == "operator" and not operator.is_operator
    with pytest.raises(PermissionDenied):
        Actor.for_staff(bob)
    with pytest.raises(PermissionDenied):
        Actor.for_admin(olga)


def changes(panel: Panel) -> list[tuple[str, Callable[[Actor], Awaitable[object]]]]:
    """Every change the admin app offers, aimed at bob and his project."""
    admin = panel.admin
    return [
        ("block", lambda actor: admin.block(actor, "bob")),
        ("unblock", lambda actor: admin.unblock(actor, "bob")),
        ("role", lambda actor: admin.set_role(actor, "bob", "admin")),
        ("plan", lambda actor: admin.change_plan(actor, "shop", "host-1")),
        ("credit", lambda actor: admin.adjust_balance(actor, "bob", 100_000, "gift")),
        ("debit", lambda actor: admin.adjust_balance(actor, "bob", -100, "fee")),
        ("promise", lambda actor: admin.grant_promised_payment(actor, "bob")),
        ("stop", lambda actor: admin.stop(actor, "shop")),
        ("start", lambda actor: admin.start(actor, "shop")),
        ("delete", lambda actor: admin.delete_project(actor, "shop", "shop")),
    ]


async def unchanged(panel: Panel) -> tuple[object, ...]:
    bob = await panel.admin.user(SYSTEM, "bob")
    shop = await panel.admin.project(SYSTEM, "shop")
    return bob, shop.plan, shop.state


async def test_an_operator_reads_everything_and_changes_nothing(panel: Panel) -> None:
    _, olga, _ = await people(panel)
    operator = Actor.for_staff(olga)
    assert [row.username for row in await panel.admin.users(operator)] == ["alice", "bob", "olga"]
    assert [row.name for row in await panel.admin.projects(operator)] == ["shop"]
    assert await panel.admin.plans(operator)
    before = await unchanged(panel)
    for name, change in changes(panel):
        with pytest.raises(PermissionDenied, match="An operator can look, not change"):
            await change(operator)
        assert await unchanged(panel) == before, name


async def test_a_user_or_their_token_reads_and_changes_nothing(panel: Panel) -> None:
    _, _, bob = await people(panel)
    token = Actor.for_token(
        bob, token_id=1, prefix="gh_x", scopes=frozenset({"read", "deploy", "admin"})
    )
    before = await unchanged(panel)
    for actor in (acting(bob), token):
        with pytest.raises(PermissionDenied):
            await panel.admin.users(actor)
        with pytest.raises(PermissionDenied):
            await panel.admin.projects(actor)
        with pytest.raises(PermissionDenied):
            await panel.admin.plans(actor)
        for name, change in changes(panel):
            with pytest.raises(PermissionDenied):
                await change(actor)
            assert await unchanged(panel) == before, name


async def test_an_admin_blocks_credits_debits_and_changes_a_plan(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    admin = Actor.for_staff(alice)
    session = await panel.sessions.open(bob.id, "password", "10.0.0.1")
    assert (await panel.admin.block(admin, "bob")).is_blocked
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    assert not (await panel.admin.unblock(admin, "bob")).is_blocked

    credit = await panel.admin.adjust_balance(admin, "bob", 200_000, "bank transfer 42")
    debit = await panel.admin.adjust_balance(admin, "bob", -50, "correction")
    entries = await panel.balances.history(SYSTEM, owner_id=bob.id)
    assert [(e.amount, e.reason, e.actor) for e in entries[:2]] == [
        (-50, "correction", "alice"),
        (200_000, "bank transfer 42", "alice"),
    ]
    assert {credit.id, debit.id} <= {e.id for e in entries}
    assert (await panel.admin.user(admin, "bob")).balance_kopecks == 199_950

    await panel.admin.change_plan(admin, "shop", "host-1")
    assert (await panel.admin.project(admin, "shop")).plan == "host-1 v1"


async def test_users_are_found_by_name_email_fingerprint_or_project(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    admin = Actor.for_staff(alice)

    async def found(search: str) -> list[str]:
        return [row.username for row in await panel.admin.users(admin, search)]

    assert await found("b") == ["bob"]
    assert await found("BOB@EXAMPLE") == ["bob"]
    assert await found("@") == []  # an email starts with its name
    fingerprint = parse_public_key(key_line("laptop")).fingerprint
    assert await found(fingerprint) == ["bob"]
    assert await found("SHA256:nothing") == []
    assert await found("p:sh") == ["bob"]
    assert await found("p:") == ["bob"]
    # A LIKE wildcard is a character like any other: it matches no name.
    assert await found("%") == []
    assert await found("_") == []
    row = (await panel.admin.users(admin, "bob"))[0]
    assert (row.projects, row.keys, row.blocked, row.role) == (1, 1, False, "user")


async def test_pages_follow_each_other_without_gaps_or_repeats(panel: Panel) -> None:
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO users (username, email, password_hash)"
            " SELECT 'user-' || lpad(n::text, 4, '0'), 'u' || n || '@example.com', 'x'"
            " FROM generate_series(1, 120) n"
        )
    seen: list[str] = []
    after = None
    while True:
        page = await panel.admin.users(SYSTEM, "user-", after=after, limit=50)
        seen += [row.username for row in page]
        if len(page) < 50:
            break
        after = page[-1].username
    assert seen == [f"user-{n:04d}" for n in range(1, 121)]


async def test_projects_are_filtered_by_state_user_and_plan(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    admin = Actor.for_staff(alice)
    await panel.projects.create(acting(alice), "diary")

    async def names(found: ProjectFilter | None = None, username: str | None = None) -> list[str]:
        rows = await panel.admin.projects(admin, found, username=username)
        return [row.name for row in rows]

    assert await names() == ["diary", "shop"]
    assert await names(username="bob") == ["shop"]
    assert await names(username="nobody") == []
    assert await names(ProjectFilter(plan_code="free")) == ["shop"]
    assert await names(ProjectFilter(state="new")) == ["diary", "shop"]
    assert await names(ProjectFilter(state="running")) == []
    assert await names(ProjectFilter(name_prefix="di")) == ["diary"]
    with pytest.raises(ValidationError, match="A state is one of"):
        await names(ProjectFilter(state="on fire"))
    shop = await panel.admin.project(admin, "shop")
    assert (shop.username, shop.plan, shop.price_kopecks) == ("bob", "free v1", 0)
    assert (await panel.admin.project(admin, "diary")).plan is None


async def test_a_projects_state_is_the_one_the_owner_sees(panel: Panel) -> None:
    """The view's state (SQL) against core.deploy.model.project_state for each case."""
    _, _, bob = await people(panel)
    project = await panel.projects.get(acting(bob), "shop")
    cases = [
        ("queued", False, False),
        ("failed", False, False),
        ("running", True, False),
        ("running", True, True),
        ("failed", True, False),
    ]
    async with panel.pool.acquire() as conn:
        for state, live, stopped in cases:
            deployment = await conn.fetchval(
                "INSERT INTO deployments (project_id, user_id, archive_name, state, project_name)"
                " VALUES ($1, $2, 'v1-app.zip', $3, 'shop') RETURNING id",
                project.id,
                bob.id,
                state,
            )
            await conn.execute(
                "UPDATE projects SET live_deployment_id = $2, stopped = $3 WHERE id = $1",
                project.id,
                deployment if live else None,
                stopped,
            )
            row = await panel.admin.project(SYSTEM, "shop")
            assert row.state == project_state(state, live, stopped), (state, live, stopped)
            await conn.execute(
                "DELETE FROM deployments WHERE id = $1 AND state <> 'running'", deployment
            )


async def test_plans_count_their_projects(panel: Panel) -> None:
    await people(panel)
    counts = {(p.plan.code, p.plan.version): p.projects for p in await panel.admin.plans(SYSTEM)}
    assert counts[("free", 1)] == 1
    assert counts[("host-1", 1)] == 0


async def test_the_system_checks_reach_each_system(panel: Panel) -> None:
    _, olga, bob = await people(panel)
    await panel.sessions.open(bob.id, "password", "10.0.0.1")
    checks = {check.name: check for check in await panel.admin.system(Actor.for_staff(olga))}
    assert checks["PostgreSQL"].ok and checks["PostgreSQL"].version.split(".")[0].isdigit()
    assert checks["Redis"].ok and checks["Redis"].version
    assert checks["Object storage"].ok
    assert checks["Disk: data"].ok and "GiB free" in checks["Disk: data"].detail
    assert checks["Deployments queue"].detail == "0 queued, 0 being worked on"
    assert checks["Login sessions"].detail == "1 open, all panel processes"
    assert all(check.latency_ms is not None for check in checks.values() if check.ok)
    with pytest.raises(PermissionDenied):
        await panel.admin.system(acting(bob))


async def test_an_admin_cancels_and_requeues_a_deployment(panel: Panel) -> None:
    alice, olga, bob = await people(panel)
    await upload(panel, acting(bob), "shop")
    queued = await panel.deployments.deploy(acting(bob), "shop")
    admin = Actor.for_staff(alice)
    operator = Actor.for_staff(olga)

    rows = await panel.admin.deployments(operator)
    assert [(r.id, r.project, r.username, r.state) for r in rows] == [
        (queued.id, "shop", "bob", "queued")
    ]
    with pytest.raises(PermissionDenied):
        await panel.admin.cancel(operator, "shop", queued.id)
    with pytest.raises(ValidationError, match="still queued"):
        await panel.admin.requeue(admin, "shop", queued.id)
    cancelled = await panel.admin.cancel(admin, "shop", queued.id)
    assert cancelled.state == "cancelled"
    assert await panel.admin.deployments(operator) == []
    again = await panel.admin.requeue(admin, "shop", queued.id)
    assert (again.state, again.archive_name) == ("queued", queued.archive_name)
    everything = await panel.admin.deployments(operator, active_only=False)
    assert [r.id for r in everything] == [again.id, queued.id]
    assert [r.id for r in await panel.admin.deployments(operator, state="cancelled")] == [queued.id]
    assert await panel.admin.deployments(operator, project_prefix="nope") == []
    with pytest.raises(PermissionDenied):
        await panel.admin.deployments(acting(bob))


async def test_billing_lists_the_accounts_at_or_below_zero(panel: Panel) -> None:
    alice, olga, _ = await people(panel)
    admin = Actor.for_staff(alice)
    await panel.admin.adjust_balance(admin, "bob", -1_000, "late fee")
    await panel.admin.adjust_balance(admin, "olga", 5_000, "gift")
    rows = await panel.admin.arrears(Actor.for_staff(olga))
    assert [(r.username, r.balance_kopecks, r.suspended_projects) for r in rows] == [
        ("bob", -1_000, 0)
    ]
    assert await panel.admin.arrears(admin, "x") == []
    assert await panel.admin.charges_today(admin) == (0, 0)
    with pytest.raises(PermissionDenied):
        await panel.admin.arrears(acting(await panel.accounts.get(rows[0].id)))
