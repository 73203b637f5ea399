"""A refused admin attempt is audited: a user, that user's token (even one granted `admin`) and
an operator try every read and change of core.admin; each is refused, nothing changes, and
each attempt is in the audit log as `admin.<method>`, refused, with its actor and target. A
flood of attempts is capped like every refused attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from core.actor import Actor
from core.audit.entries import AuditEvent
from core.audit.service import UNHAPPY_PER_HOUR
from core.billing.plans import PlanSpec
from core.errors import NotFoundError, PermissionDenied
from core.identity.accounts import User
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.integration.test_admin_views import people, unchanged

Attempt = Callable[[Actor], Awaitable[object]]


def reads(panel: Panel) -> list[tuple[str, str | None, Attempt]]:
    """Every read of the admin app: (action, target name, the call)."""
    admin = panel.admin
    return [
        ("admin.users", None, lambda actor: admin.users(actor, "b")),
        ("admin.user", "bob", lambda actor: admin.user(actor, "bob")),
        ("admin.projects", None, lambda actor: admin.projects(actor)),
        ("admin.project", "shop", lambda actor: admin.project(actor, "shop")),
        ("admin.plans", None, lambda actor: admin.plans(actor)),
        ("admin.audit", None, lambda actor: admin.audit(actor, "outcome:refused")),
        ("admin.deployments", None, lambda actor: admin.deployments(actor)),
        ("admin.arrears", None, lambda actor: admin.arrears(actor)),
        ("admin.charges_today", None, lambda actor: admin.charges_today(actor)),
        ("admin.system", None, lambda actor: admin.system(actor)),
        ("admin.processes", None, lambda actor: admin.processes(actor)),
        ("admin.user_detail", "bob", lambda actor: admin.user_detail(actor, "bob")),
        ("admin.project_usage", "shop", lambda actor: admin.project_usage(actor, "shop")),
        ("admin.revenue", None, lambda actor: admin.revenue(actor)),
        ("admin.invoices", None, lambda actor: admin.invoices(actor)),
        ("admin.invoice", None, lambda actor: admin.invoice(actor, 1)),
        # One of the log reads: the log keeps one identical refusal a minute.
        ("admin.logs", "shop", lambda actor: admin.logs.status(actor, "shop")),
    ]


def changes(panel: Panel) -> list[tuple[str, str | None, Attempt]]:
    """Every change of the admin app, aimed at bob and his project."""
    admin = panel.admin
    tiny = PlanSpec("tiny", "Tiny", 0, 250, 256, 256, 1)
    return [
        ("admin.block", "bob", lambda actor: admin.block(actor, "bob")),
        ("admin.unblock", "bob", lambda actor: admin.unblock(actor, "bob")),
        ("admin.set_role", "bob", lambda actor: admin.set_role(actor, "bob", "admin")),
        ("admin.change_plan", "shop", lambda actor: admin.change_plan(actor, "shop", "host-1")),
        ("admin.adjust_balance", "bob", lambda a: admin.adjust_balance(a, "bob", 10**6, "gift")),
        ("admin.grant_promised_payment", "bob", lambda a: admin.grant_promised_payment(a, "bob")),
        ("admin.stop", "shop", lambda actor: admin.stop(actor, "shop")),
        ("admin.start", "shop", lambda actor: admin.start(actor, "shop")),
        ("admin.cancel", "shop", lambda actor: admin.cancel(actor, "shop", 1)),
        ("admin.requeue", "shop", lambda actor: admin.requeue(actor, "shop", 1)),
        ("admin.delete_project", "shop", lambda a: admin.delete_project(a, "shop", "shop")),
        ("admin.create_plan", None, lambda actor: admin.create_plan(actor, tiny)),
        ("admin.retire_plan", "host-0", lambda actor: admin.retire_plan(actor, "host-0")),
        ("admin.suspend", "shop", lambda actor: admin.suspend(actor, "shop", "abuse")),
        ("admin.resume", "shop", lambda actor: admin.resume(actor, "shop")),
        ("admin.view_as", "bob", lambda actor: admin.view_as(actor, "bob")),
    ]


async def token_actor(panel: Panel, owner: User, scopes: set[str]) -> Actor:
    """The actor of a real token of `owner`, as an SSH login with it gets it."""
    created = await panel.accounts.get(owner.id)
    made = await panel.access_tokens.create(acting(created), f"t{len(scopes)}", scopes)
    login = await panel.access_tokens.authenticate(owner.username, made.secret, "10.0.0.9")
    return login.actor


async def refused_entries(panel: Panel, actor: Actor) -> list[AuditEvent]:
    """What the audit log holds of `actor`'s refused admin attempts (read by the system)."""
    found = await panel.audit.list(Actor.system("tests"), action="admin", everyone=True, limit=200)
    return [
        e
        for e in found
        if e.actor_label == actor.label and e.source_address == actor.source_address
    ]


async def test_every_refused_admin_attempt_is_audited_and_changes_nothing(
    panel: Panel,
) -> None:
    _, olga, bob = await people(panel)
    # The token is carol's: every account has its own hourly allowance of refused entries,
    # and bob's attempts alone come close to it.
    carol = await panel.accounts.sign_up("carol", "carol@example.org", "correct horse battery")
    tries = [
        (acting(bob).acting_from("command", source_address="10.0.0.1"), True),
        (
            (await token_actor(panel, carol, {"read", "deploy", "admin"})).acting_from(
                "command", source_address="10.0.0.2"
            ),
            True,
        ),
        (Actor.for_staff(olga).acting_from("admin", source_address="10.0.0.3"), False),
    ]
    assert "admin" not in tries[1][0].scopes  # a user's token cannot raise its owner's rights
    before = await unchanged(panel)
    for actor, refused_reads in tries:
        attempted = changes(panel) + (reads(panel) if refused_reads else [])
        for _action, _, attempt in attempted:
            with pytest.raises(PermissionDenied):
                await attempt(actor)
        assert await unchanged(panel) == before
        logged = await refused_entries(panel, actor)
        assert sorted((e.action, e.target_name) for e in logged) == sorted(
            (action, name) for action, name, _ in attempted
        ), actor.label
        for entry in logged:
            assert entry.outcome == "refused"
            assert entry.actor_user_id == actor.user_id and entry.token_id == actor.token_id
            assert entry.actor_kind == actor.kind  # an operator too, as the operator it is
            assert entry.metadata == {"reason": "PermissionDenied"}
            # Bob's or olga's attempts are in their own log, not pinned on bob's data.
            assert entry.owner_id is None and entry.target_id is None


async def test_an_operator_reads_without_a_refusal_in_the_log(panel: Panel) -> None:
    _, olga, _ = await people(panel)
    operator = Actor.for_staff(olga).acting_from("admin", source_address="10.0.0.3")
    for action, _, attempt in reads(panel):
        if action == "admin.system":  # this panel runs no system checks
            continue
        try:
            await attempt(operator)
        except NotFoundError:  # invoice 1 does not exist: looked for, not refused
            assert action == "admin.invoice"
    assert await refused_entries(panel, operator) == []


async def test_an_admin_and_an_admins_admin_token_are_let_through(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    admin_token = await token_actor(panel, alice, {"read", "admin"})
    plain_token = (await token_actor(panel, alice, {"read"})).acting_from(
        "command", source_address="10.0.0.5"
    )
    assert (await panel.admin.user(admin_token, "bob")).username == "bob"
    assert (await panel.admin.block(admin_token, "bob")).is_blocked
    # An admin's token without the scope is a token like any other: refused, and audited.
    with pytest.raises(PermissionDenied):
        await panel.admin.unblock(plain_token, "bob")
    assert [e.action for e in await refused_entries(panel, plain_token)] == ["admin.unblock"]
    assert (await panel.admin.user(Actor.for_staff(alice), "bob")).blocked


async def test_a_token_still_cannot_end_its_own_accounts_logins(panel: Panel) -> None:
    """Blocking another account ends its logins, so an admin's `admin` token may end those;
    no token ends its own account's (a leaked one must not lock the person out)."""
    alice, _, bob = await people(panel)
    admin_token = await token_actor(panel, alice, {"read", "admin"})
    bobs_token = await token_actor(panel, bob, {"read", "deploy", "admin"})
    mine = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    for own in (None, alice.id):
        with pytest.raises(PermissionDenied, match="A token cannot end login sessions"):
            await panel.sessions.revoke_all(admin_token, owner_id=own)
    with pytest.raises(NotFoundError):
        await panel.sessions.revoke_all(bobs_token, owner_id=alice.id)
    assert await panel.sessions.ended([mine.jti]) == set()
    theirs = await panel.sessions.open(bob.id, "password", "10.0.0.2")
    assert await panel.sessions.revoke_all(admin_token, owner_id=bob.id) == 1
    assert await panel.sessions.ended([theirs.jti]) == {theirs.jti}


async def test_only_an_admins_admin_token_changes_another_accounts_plan(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    admin_token = await token_actor(panel, alice, {"deploy", "admin"})
    bobs_token = await token_actor(panel, bob, {"deploy", "admin"})
    with pytest.raises(PermissionDenied, match="A token cannot change a plan"):
        await panel.subscriptions.change_plan(bobs_token, "shop", "host-1")
    with pytest.raises(PermissionDenied):
        await panel.admin.change_plan(bobs_token, "shop", "host-1")
    assert (await panel.admin.project(SYSTEM, "shop")).plan.startswith("free")
    changed = await panel.admin.change_plan(admin_token, "shop", "host-1")
    assert changed.plan.code == "host-1"


async def test_a_flood_of_refused_admin_attempts_is_capped(panel: Panel) -> None:
    _, _, bob = await people(panel)
    actor = acting(bob).acting_from("command", source_address="10.0.0.7")
    # The same attempt again and again is written once a minute.
    for _ in range(5):
        with pytest.raises(PermissionDenied):
            await panel.admin.block(actor, "alice")
    assert len(await refused_entries(panel, actor)) == 1
    # Another target each time: written up to the hourly cap of the account, then dropped.
    for attempt in range(UNHAPPY_PER_HOUR + 20):
        with pytest.raises(PermissionDenied):
            await panel.admin.block(actor, f"victim{attempt}")
    assert len(await refused_entries(panel, actor)) == UNHAPPY_PER_HOUR
