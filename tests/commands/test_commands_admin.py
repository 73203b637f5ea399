"""`admin ...` against a real panel: the JSON shapes an admin's script reads, and who is
refused (exit 4, each attempt audited as `admin.<method>`): a user, a user's token even with
the `admin` scope, an admin's token without it, an operator for changes, an operator's token."""

from __future__ import annotations

from typing import Any

import pytest

from core.actor import Actor
from core.audit.entries import AuditEvent
from core.identity.accounts import User
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.commands.snapshots import assert_snapshot
from tests.commands.streams import run
from tests.e2e.transfers import app_zip
from tests.integration.test_actor_rights import upload
from tests.integration.test_admin_views import people

pytestmark = pytest.mark.timeout(120)


def at(actor: Actor, address: str) -> Actor:
    return actor.acting_from("command", source_address=address, request_id="req-admin")


async def token_of(panel: Panel, owner: User, scopes: str, address: str) -> Actor:
    """A real token of `owner`, logged in with as an SSH password is."""
    made = await panel.access_tokens.create(
        acting(owner), f"t-{scopes.replace(',', '-')}", scopes.split(",")
    )
    login = await panel.access_tokens.authenticate(owner.username, made.secret, address)
    return at(login.actor, address)


def without_ids(data: Any) -> Any:
    """Ids of accounts and deployments vary with the test's order: placeholders."""
    if isinstance(data, list):
        return [without_ids(item) for item in data]
    if isinstance(data, dict):
        return {
            key: "<id>"
            if key.endswith("_id") and key != "request_id" and value is not None
            else without_ids(value)
            for key, value in data.items()
        }
    return data


async def refused(panel: Panel, actor: Actor) -> list[tuple[str, str | None]]:
    """`actor`'s refused admin attempts in the audit log, oldest first."""
    found: list[AuditEvent] = await panel.audit.list(SYSTEM, action="admin", everyone=True)
    return [
        (e.action, e.target_name)
        for e in reversed(found)
        if e.outcome == "refused"
        and e.actor_label == actor.label
        and e.source_address == actor.source_address
        and e.origin == "command"
    ]


async def test_the_json_shapes_of_the_admin_commands(panel: Panel) -> None:
    alice, _, bob = await people(panel)
    admin = at(acting(alice), "192.0.2.1")  # a key login: the account's role decides
    shapes: dict[str, Any] = {}

    async def ok(name: str | None, line: str) -> Any:
        ran = await run(line, admin, panel)
        assert ran.status == 0, (line, ran.stderr)
        if name is not None:
            shapes[name] = without_ids(ran.json())
        return ran.json()

    assert [u["username"] for u in await ok("admin_users", "admin users --json")] == [
        "alice",
        "bob",
        "olga",
    ]
    assert [u["username"] for u in await ok(None, "admin users --search b --json")] == ["bob"]
    assert [u["username"] for u in await ok(None, "admin users --after bob --json")] == ["olga"]
    assert [p["name"] for p in await ok("admin_projects", "admin projects --user bob --json")] == [
        "shop"
    ]
    assert await ok(None, "admin projects --user alice --json") == []
    assert await ok(None, "admin projects --state running --json") == []
    await ok("admin_credit", "admin credit bob 2000 --reason 'bank transfer' --yes --json")
    debit = await ok("admin_debit", "admin debit bob 0.50 --reason fee --yes --json")
    assert debit["amount_kopecks"] == -50
    assert await ok("admin_plan", "admin plan shop host-1 --yes --json") == {
        "plan": "host-1",
        "project": "shop",
        "version": 1,
    }
    assert (await ok("admin_block", "admin block bob --yes --json"))["blocked"] is True
    assert (await ok(None, "admin unblock bob --json"))["blocked"] is False
    assert (await ok("admin_role", "admin role bob operator --yes --json"))["role"] == "operator"
    await ok(None, "admin role bob user --yes --json")

    await upload(panel, acting(bob), "shop")
    queued = await panel.deployments.deploy(acting(bob), "shop")
    listed = await ok("admin_deploys", "admin deploys --json")
    assert [(d["id"], d["state"]) for d in listed] == [(queued.id, "queued")]
    assert (await ok(None, f"admin cancel shop {queued.id} --yes --json"))["state"] == "cancelled"
    again = await ok(None, f"admin requeue shop {queued.id} --json")
    assert again["state"] == "queued" and again["version"] == "v1-app.zip"
    assert [d["id"] for d in await ok(None, "admin deploys --all --json")] == [
        again["id"],
        queued.id,
    ]

    entries = await ok(None, "admin audit actor:alice action:account --json")
    assert [(e["action"], e["target"]["name"], e["outcome"]) for e in entries] == [
        ("account.set_role", "bob", "ok"),
        ("account.set_role", "bob", "ok"),
        ("account.unblock", "bob", "ok"),
        ("account.block", "bob", "ok"),
    ]
    assert {(e["actor"]["kind"], e["origin"], e["source_address"]) for e in entries} == {
        ("admin", "command", "192.0.2.1")
    }
    shapes["admin_audit"] = without_ids({**entries[-1], "at": "<at>"})
    for name, data in shapes.items():
        assert_snapshot(name, data)


async def test_admin_text_output_and_usage(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    admin = at(acting(alice), "192.0.2.1")
    users = await run("admin users", admin, panel)
    assert users.status == 0, users.stderr
    lines = users.stdout.splitlines()
    assert lines[0].split()[:3] == ["USER", "ROLE", "BLOCKED"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["alice", "admin", "no"],
        ["bob", "user", "no"],
        ["olga", "operator", "no"],
    ]
    credited = await run("admin credit bob 12.5 --reason gift --yes", admin, panel)
    assert (credited.status, credited.stdout) == (0, "12.50 RUB\n"), credited.stderr
    assert "gift" in credited.stderr
    suspended = await run("admin suspend shop --reason spam --yes", admin, panel)
    assert suspended.status == 0 and "suspended" in suspended.stderr, suspended.stderr
    assert (await panel.admin.project(SYSTEM, "shop")).held
    resumed = await run("admin resume shop", admin, panel)
    assert resumed.status == 0 and "lifted" in resumed.stderr, resumed.stderr
    assert not (await panel.admin.project(SYSTEM, "shop")).held
    for line, status in [
        ("admin", 2),  # a verb is needed: the noun's help, on stderr
        ("admin block bob", 2),  # destructive: --yes
        ("admin credit bob 10", 2),  # --reason is required
        ("admin credit bob -10 --reason x --yes", 2),
        ("admin credit bob ten --reason x --yes", 2),
        ("admin role bob root --yes", 2),
        ("admin block nobody --yes", 3),
        ("admin plan shop nothing --yes", 3),
        ("admin stop nothing", 3),
        ("admin suspend shop --reason spam", 2),  # destructive: --yes
        ("admin suspend shop --yes", 2),  # --reason is required
        ("admin resume nothing", 3),
        ("admin projects --state sleeping", 2),
        ("admin audit since:forever", 2),
    ]:
        ran = await run(line, admin, panel)
        assert ran.status == status, (line, ran.status, ran.stderr)
        assert ran.stdout == "" and ran.stderr, line
    logged = await run("admin audit", admin, panel)
    assert logged.stdout.splitlines()[0].split()[-1] == "FROM", logged.stdout
    assert "192.0.2.1" in logged.stdout  # where the credit came from, as in a user's own log
    helped = await run("admin help", admin, panel)
    assert helped.status == 0 and "block" in helped.stdout and "audit" in helped.stdout
    assert "--reason" in (await run("help admin credit", admin, panel)).stdout
    assert "admin" in (await run("help", admin, panel)).stdout


READS = ["admin users", "admin projects", "admin deploys", "admin audit"]
CHANGES = [
    ("admin block bob --yes", "admin.block", "bob"),
    ("admin unblock bob", "admin.unblock", "bob"),
    ("admin role bob admin --yes", "admin.set_role", "bob"),
    ("admin credit bob 100 --reason gift --yes", "admin.adjust_balance", "bob"),
    ("admin debit alice 100 --reason spite --yes", "admin.adjust_balance", "alice"),
    ("admin plan shop host-1 --yes", "admin.change_plan", "shop"),
    ("admin stop shop", "admin.stop", "shop"),
    ("admin start shop", "admin.start", "shop"),
    ("admin cancel shop 1 --yes", "admin.cancel", "shop"),
    ("admin requeue shop 1", "admin.requeue", "shop"),
    ("admin suspend shop --reason spam --yes", "admin.suspend", "shop"),
    ("admin resume shop", "admin.resume", "shop"),
]
READ_ACTIONS = [
    ("admin.users", None),
    ("admin.projects", None),
    ("admin.deployments", None),
    ("admin.audit", None),
]


async def test_who_is_refused_exits_4_and_every_attempt_is_audited(panel: Panel) -> None:
    alice, olga, bob = await people(panel)
    nobodies = [
        at(acting(bob), "198.51.100.1"),
        await token_of(panel, bob, "read,deploy,admin", "198.51.100.2"),
        await token_of(panel, alice, "read,deploy", "198.51.100.3"),  # an admin's, no `admin`
        await token_of(panel, olga, "read,deploy,admin", "198.51.100.4"),  # an operator's
    ]
    before = await panel.admin.user(SYSTEM, "bob"), await panel.admin.project(SYSTEM, "shop")
    for actor in nobodies:
        for line in READS + [line for line, _, _ in CHANGES]:
            ran = await run(line, actor, panel)
            assert (ran.status, ran.stdout) == (4, ""), (actor.label, line, ran.stderr)
            assert "needs an administrator" in ran.stderr
        assert await refused(panel, actor) == READ_ACTIONS + [
            (action, target) for _, action, target in CHANGES
        ], actor.label

    operator = at(acting(olga), "198.51.100.5")  # a password login: reads, never changes
    for line in READS:
        ran = await run(line + " --json", operator, panel)
        assert ran.status == 0, (line, ran.stderr)
    for line, _, _ in CHANGES:
        ran = await run(line, operator, panel)
        assert ran.status == 4 and "An operator can look, not change" in ran.stderr, line
    assert await refused(panel, operator) == [(action, target) for _, action, target in CHANGES]

    after = await panel.admin.user(SYSTEM, "bob"), await panel.admin.project(SYSTEM, "shop")
    assert after == before


async def test_an_admins_admin_token_blocks_and_a_blocked_account_is_refused(
    panel: Panel,
) -> None:
    alice, _, _ = await people(panel)
    admin_token = await token_of(panel, alice, "admin", "192.0.2.9")
    blocked = await run("admin block bob --yes", admin_token, panel)
    assert blocked.status == 0, blocked.stderr
    assert "Blocked bob" in blocked.stderr
    assert (await panel.admin.user(SYSTEM, "bob")).blocked
    # Scopes still hold: stopping a project is the `deploy` scope's, which this token lacks.
    assert (await run("admin stop shop", admin_token, panel)).status == 4
    entries = await panel.admin.audit(SYSTEM, "action:account.block")
    assert [(e.actor_kind, e.actor_label, e.token_id is not None) for e in entries] == [
        ("token", admin_token.label, True)
    ]


async def test_an_admin_token_reaches_other_tenants_only_through_admin(panel: Panel) -> None:
    """Outside `admin`, an admin's token is an ordinary token of her account: bob's project
    reads exactly like a missing one to `env --reveal`, `upload`, `stop`, `projects info`."""
    alice, _, bob = await people(panel)
    await panel.env.set(acting(bob), "shop", "SECRET", "bobs-password")
    admin_token = await token_of(panel, alice, "read,deploy,logs,env:write,admin", "192.0.2.7")
    who = await run("whoami --json", admin_token, panel)
    assert "admin" in who.json()["scopes"]
    for line in (
        "env shop list --reveal",
        "projects info shop",
        "stop shop",
        "deployments shop",
        "upload shop",
    ):
        ran = await run(line, admin_token, panel, app_zip())
        missing = await run(line.replace("shop", "nope"), admin_token, panel, app_zip())
        assert ran.status == missing.status == 3, (line, ran.stderr)
        assert ran.stderr.replace("shop", "nope") == missing.stderr, line
        assert "bobs-password" not in ran.stdout + ran.stderr
    assert (await panel.admin.project(SYSTEM, "shop")).state == "new"
    listed = await run("admin projects --user bob --json", admin_token, panel)
    assert [p["name"] for p in listed.json()] == ["shop"]
