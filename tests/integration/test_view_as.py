"""View as user with the real services: an admin reads a user's rows through
`Actor.viewing_as`, every write of every service in the ServiceSet is refused with the
read-only message and changes nothing in PostgreSQL, no secret is handed out, the start is
audited with the admin as actor, and operators, users and viewers cannot start one."""

from __future__ import annotations

import dataclasses
import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable

import pytest

import core.services
from core.actor import Actor
from core.billing.plans import PlanSpec
from core.errors import NotFoundError, PermissionDenied
from core.identity.accounts import User
from core.identity.keys import parse_public_key
from core.panel import Panel
from core.services import ServiceSet
from tests.actors import SYSTEM, acting
from tests.integration.test_actor_rights import upload
from tests.tui.fakes import key_line

PASSWORD = "correct horse battery"
READ_ONLY = "Viewing as bob: read-only."


async def people(panel: Panel) -> tuple[User, User, User]:
    """alice (admin), olga (operator), bob (user): a project "shop" with one version and a
    secret variable, a key, a token, an open login and some credit."""
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.accounts.sign_up("olga", "olga@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    alice = await panel.accounts.set_role(SYSTEM, "alice", "admin")
    olga = await panel.accounts.set_role(SYSTEM, "olga", "operator")
    await panel.subscriptions.create_project(acting(bob), "shop")
    await panel.env.set(acting(bob), "shop", "SECRET_KEY", "bob's very secret value")
    await upload(panel, acting(bob), "shop")
    await panel.keys.add(acting(bob), key_line("laptop"))
    await panel.access_tokens.create(acting(bob), "ci", ["read", "deploy"])
    await panel.sessions.open(bob.id, "password", "10.0.0.9")
    await panel.balances.adjust(SYSTEM, bob.id, 50_000, "welcome credit")
    return alice, olga, bob


async def viewer_of(panel: Panel, admin: User, username: str = "bob") -> Actor:
    viewing = await panel.admin.view_as(Actor.for_admin(admin).acting_from("admin"), username)
    return viewing.actor


async def database_state(panel: Panel) -> dict[str, str]:
    """A digest of every table's rows but the audit log's (a refused attempt is recorded
    there, as the admin's) and the migrations'."""
    async with panel.pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('audit_events', 'schema_migrations') ORDER BY tablename"
        )
        state = {}
        for row in tables:
            name = row["tablename"]
            state[name] = await conn.fetchval(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{name}\" t"
            )
        return state


Call = Callable[[ServiceSet, Actor, User], Awaitable[object]]


def writes(shop_archive: str, key_id: int, deployment_id: int, jti: uuid.UUID) -> dict[str, Call]:
    """Every method of the ServiceSet that changes something and takes an actor."""
    plan = PlanSpec(
        code="viewplan", name="View", price_kopecks=100, cpu_millicores=500, ram_mb=256, disk_mb=512,
        max_services=1,
    )  # fmt: skip
    return {
        "accounts.block": lambda s, v, b: s.accounts.block(v, "bob"),
        "accounts.unblock": lambda s, v, b: s.accounts.unblock(v, "bob"),
        "accounts.set_role": lambda s, v, b: s.accounts.set_role(v, "bob", "admin"),
        "accounts.set_admin": lambda s, v, b: s.accounts.set_admin(v, "bob", True),
        "accounts.change_password": lambda s, v, b: s.accounts.change_password(
            v, PASSWORD, "another long password", "10.0.0.1"
        ),
        "keys.add": lambda s, v, b: s.keys.add(v, key_line("desktop")),
        "keys.add_parsed": lambda s, v, b: s.keys.add_parsed(
            v, parse_public_key(key_line("desktop"))
        ),
        "keys.remove": lambda s, v, b: s.keys.remove(v, key_id),
        "sessions.revoke": lambda s, v, b: s.sessions.revoke(v, jti),
        "sessions.revoke_all": lambda s, v, b: s.sessions.revoke_all(v),
        "sessions.revoke_others": lambda s, v, b: s.sessions.revoke_others(v, uuid.uuid4()),
        "sessions.revoke_password_logins": lambda s, v, b: s.sessions.revoke_password_logins(v),
        "sessions.revoke_token_logins": lambda s, v, b: s.sessions.revoke_token_logins(v, 1),
        "projects.create": lambda s, v, b: s.projects.create(v, "blog"),
        "projects.delete": lambda s, v, b: s.projects.delete(v, "shop", "shop"),
        "projects.set_app_port": lambda s, v, b: s.projects.set_app_port(v, "shop", 3000),
        "archives.begin_upload": lambda s, v, b: s.archives.begin_upload(v, "shop", "b.zip"),
        "archives.delete": lambda s, v, b: s.archives.delete(v, "shop", shop_archive),
        "archives.delete_project": lambda s, v, b: s.archives.delete_project(v, "shop", "shop"),
        "env.set": lambda s, v, b: s.env.set(v, "shop", "SECRET_KEY", "changed"),
        "env.unset": lambda s, v, b: s.env.unset(v, "shop", "SECRET_KEY"),
        "deployments.deploy": lambda s, v, b: s.deployments.deploy(v, "shop"),
        "deployments.redeploy": lambda s, v, b: s.deployments.redeploy(v, "shop"),
        "deployments.restart": lambda s, v, b: s.deployments.restart(v, "shop"),
        "deployments.rollback": lambda s, v, b: s.deployments.rollback(v, "shop", deployment_id),
        "deployments.cancel": lambda s, v, b: s.deployments.cancel(v, "shop", deployment_id),
        "deployments.start": lambda s, v, b: s.deployments.start(v, "shop"),
        "deployments.stop": lambda s, v, b: s.deployments.stop(v, "shop"),
        "deployments.delete_project": lambda s, v, b: s.deployments.delete_project(
            v, "shop", "shop"
        ),
        "plans.add_version": lambda s, v, b: s.plans.add_version(v, plan),
        "plans.retire": lambda s, v, b: s.plans.retire(v, "free"),
        "subscriptions.change_plan": lambda s, v, b: s.subscriptions.change_plan(v, "shop", "free"),
        "subscriptions.create_project": lambda s, v, b: s.subscriptions.create_project(v, "blog"),
        "balances.adjust": lambda s, v, b: s.balances.adjust(v, b.id, 100, "a gift"),
        "payments.record_manual": lambda s, v, b: s.payments.record_manual(v, b.id, 100, "cash"),
        "payments.start": lambda s, v, b: s.payments.start(v, 10_000),
        "promised.take": lambda s, v, b: s.promised.take(v),
        "access_tokens.create": lambda s, v, b: s.access_tokens.create(v, "mine", ["read"]),
        "access_tokens.revoke": lambda s, v, b: s.access_tokens.revoke(v, "ci"),
        "audit.record": lambda s, v, b: s.audit.record(v, "account.note"),
        "admin.block": lambda s, v, b: s.admin.block(v, "bob"),
        "admin.unblock": lambda s, v, b: s.admin.unblock(v, "bob"),
        "admin.set_role": lambda s, v, b: s.admin.set_role(v, "bob", "admin"),
        "admin.change_plan": lambda s, v, b: s.admin.change_plan(v, "shop", "free"),
        "admin.adjust_balance": lambda s, v, b: s.admin.adjust_balance(v, "bob", 100, "gift"),
        "admin.grant_promised_payment": lambda s, v, b: s.admin.grant_promised_payment(v, "bob"),
        "admin.stop": lambda s, v, b: s.admin.stop(v, "shop"),
        "admin.start": lambda s, v, b: s.admin.start(v, "shop"),
        "admin.cancel": lambda s, v, b: s.admin.cancel(v, "shop", deployment_id),
        "admin.requeue": lambda s, v, b: s.admin.requeue(v, "shop", deployment_id),
        "admin.delete_project": lambda s, v, b: s.admin.delete_project(v, "shop", "shop"),
        "admin.create_plan": lambda s, v, b: s.admin.create_plan(v, plan),
        "admin.retire_plan": lambda s, v, b: s.admin.retire_plan(v, "free"),
        "admin.view_as": lambda s, v, b: s.admin.view_as(v, "olga"),
        "admin.suspend": lambda s, v, b: s.admin.suspend(v, "shop", "abuse"),
        "admin.resume": lambda s, v, b: s.admin.resume(v, "shop"),
    }


# Methods that take an actor and change nothing: the walk below calls them too (a viewer
# reads the user's rows), and every method of the ServiceSet is in one list or the other.
READS = frozenset(
    {
        "accounts.list", "keys.count", "keys.list", "sessions.active_count", "projects.get",
        "projects.list", "projects.resolve", "archives.find", "archives.list", "archives.usage",
        "env.list", "deployments.build_log", "deployments.get", "deployments.list",
        "deployments.runtime_logs", "deployments.status", "deployments.statuses",
        "events.subscribe", "subscriptions.has_free_project", "subscriptions.outlook",
        "subscriptions.plan_of", "subscriptions.preview_change", "subscriptions.usage",
        "balances.balance", "balances.check", "balances.history", "payments.list",
        "promised.history", "promised.offer", "invoices.get", "invoices.list",
        "access_tokens.list", "audit.list", "admin.arrears", "admin.audit",
        "admin.charges_today", "admin.deployments", "admin.plans", "admin.project",
        "admin.projects", "admin.system", "admin.user", "admin.users", "admin.user_detail",
        "admin.project_usage", "admin.revenue", "admin.invoices", "admin.invoice",
        "admin.processes",
    }
)  # fmt: skip


def methods_taking_an_actor() -> set[str]:
    hints = typing.get_type_hints(ServiceSet, vars(core.services))
    found = set()
    for field in dataclasses.fields(ServiceSet):
        for name, function in inspect.getmembers(hints[field.name], inspect.isfunction):
            parameters = list(inspect.signature(function).parameters)
            if not name.startswith("_") and parameters[1:2] == ["actor"]:
                found.add(f"{field.name}.{name}")
    return found


async def a_deployment(panel: Panel, bob: User) -> int:
    deployment = await panel.deployments.deploy(acting(bob), "shop")
    return deployment.id


async def test_every_write_of_every_service_is_refused_and_changes_nothing(
    panel: Panel,
) -> None:
    alice, _, bob = await people(panel)
    archive = (await panel.archives.list(acting(bob), "shop"))[0].name
    key_id = (await panel.keys.list(acting(bob)))[0].id
    deployment_id = await a_deployment(panel, bob)
    jti = await panel.sessions.open(bob.id, "password", "10.0.0.8")
    viewer = await viewer_of(panel, alice)
    calls = writes(archive, key_id, deployment_id, jti.jti)
    assert methods_taking_an_actor() == set(calls) | READS, "classify the new method"

    before = await database_state(panel)
    services = ServiceSet.of(panel)
    answers = {}
    for name, call in calls.items():
        try:
            await call(services, viewer, bob)
            answers[name] = "done"
        except PermissionDenied as refused:
            answers[name] = refused.message
    assert {name: READ_ONLY for name in calls} == answers
    assert await database_state(panel) == before


async def test_a_viewer_reads_the_users_rows_as_the_user_would(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    viewer = await viewer_of(panel, alice)
    assert [p.name for p in await panel.projects.list(viewer)] == ["shop"]
    assert [k.name for k in await panel.keys.list(viewer)] == ["alice@laptop"]
    assert [t.name for t in await panel.access_tokens.list(viewer)] == ["ci"]
    assert await panel.balances.balance(viewer) == 50_000
    assert await panel.sessions.active_count(viewer) == 1
    assert (await panel.subscriptions.outlook(viewer)).balance == 50_000
    # Not the admin's own rows, and no one else's: another account reads as missing.
    with pytest.raises(NotFoundError):
        await panel.keys.list(viewer, owner_id=alice.id)
    # Not an operator either: the admin app's reads need the admin's own actor.
    with pytest.raises(PermissionDenied):
        await panel.admin.users(viewer)


async def test_a_viewer_never_gets_an_env_value(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    viewer = await viewer_of(panel, alice)
    shown = await panel.env.list(viewer, "shop")
    assert [var.name for var in shown] == ["SECRET_KEY"]
    assert "secret value" not in shown[0].value
    assert (await panel.env.list(acting(bob), "shop"))[0].value == "bob's very secret value"


async def test_starting_a_view_is_audited_with_the_admin_as_actor(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    viewer = await viewer_of(panel, alice)
    with pytest.raises(PermissionDenied):
        await panel.env.set(viewer, "shop", "SECRET_KEY", "x")
    async with panel.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, actor_kind, actor_user_id, actor_label, target_name, owner_id,"
            " outcome FROM audit_events WHERE action IN ('admin.view_as', 'env.set')"
            " AND actor_user_id = $1 ORDER BY id",
            alice.id,
        )
    assert [dict(row) for row in rows] == [
        {
            "action": "admin.view_as",
            "actor_kind": "admin",
            "actor_user_id": alice.id,
            "actor_label": "alice",
            "target_name": "bob",
            "owner_id": bob.id,
            "outcome": "ok",
        },
        {  # the refused write: the admin's attempt, not bob's
            "action": "env.set",
            "actor_kind": "admin",
            "actor_user_id": alice.id,
            "actor_label": "alice viewing as bob",
            "target_name": "shop",
            "owner_id": None,
            "outcome": "refused",
        },
    ]


async def test_operators_users_and_tokens_without_admin_cannot_start_a_view(
    panel: Panel,
) -> None:
    alice, olga, bob = await people(panel)
    for actor in (
        Actor.for_staff(olga),
        acting(bob),
        Actor.for_token(bob, token_id=1, prefix="abc", scopes=frozenset({"read", "admin"})),
    ):
        with pytest.raises(PermissionDenied):
            await panel.admin.view_as(actor, "alice")
    with pytest.raises(PermissionDenied):
        Actor.viewing_as(acting(bob), alice)
    async with panel.pool.acquire() as conn:
        started = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'admin.view_as' AND outcome = 'ok'"
        )
    assert started == 0


async def test_the_system_behind_ghst_admin_may_view(panel: Panel) -> None:
    await people(panel)
    viewing = await panel.admin.view_as(SYSTEM, "bob")
    assert viewing.user.username == "bob"
    assert [p.name for p in await panel.projects.list(viewing.actor)] == ["shop"]
    with pytest.raises(PermissionDenied, match="read-only"):
        await panel.projects.create(viewing.actor, "blog")
