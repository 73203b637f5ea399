"""The audit log against the real PostgreSQL: each change writes its entry in its own
transaction (none when it rolls back), refusals are recorded apart and capped, entries are
never changed, retention exports before it prunes, and tenants see only their own entries."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.actor import Actor
from core.archives.checks import ArchiveRejected
from core.audit import service as audit_service
from core.audit.entries import AuditEvent
from core.errors import AuthenticationError, NotFoundError, PermissionDenied, SuspendedError
from core.identity.keys import parse_public_key
from core.panel import Panel
from tests.actors import SYSTEM
from tests.integration.test_archives import app_zip
from tests.integration.test_suspension import run_out

PASSWORD = "correct horse battery"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl laptop"


async def user(panel: Panel, name: str, address: str = "203.0.113.7") -> Actor:
    """A new account, acting from the dashboard with an address and a request id."""
    account = await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD)
    return Actor.for_user(account).acting_from(
        "dashboard", source_address=address, request_id=f"req-{name}"
    )


async def mine(panel: Panel, actor: Actor, **filters: object) -> list[AuditEvent]:
    return await panel.audit.list(actor, **filters)  # type: ignore[arg-type]


async def everything(panel: Panel) -> list[AuditEvent]:
    return await panel.audit.list(SYSTEM, everyone=True, limit=200)


async def raw_rows(panel: Panel) -> list[str]:
    """Every stored entry as its full text (to look for what must never be stored)."""
    async with panel.pool.acquire() as conn:
        rows = await conn.fetch("SELECT row_to_json(a)::text AS text FROM audit_events a")
    return [row["text"] for row in rows]


def read_exports(folder: Path) -> list[dict[str, Any]]:
    lines = [
        line for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()
    ]
    return [json.loads(line) for line in lines]


async def upload(panel: Panel, actor: Actor, project: str, data: bytes) -> None:
    transfer = await panel.archives.begin_upload(actor, project, "app.zip")
    await transfer.write(data)
    await transfer.finish()


async def test_keys_and_projects_write_their_entries_with_every_field(panel: Panel) -> None:
    alice = await user(panel, "alice")
    key = await panel.keys.add(alice, KEY)
    await panel.projects.create(alice, "shop")
    await panel.keys.remove(alice, key.id)
    await panel.projects.delete(alice, "shop", "shop")
    events = await mine(panel, alice)
    assert [event.action for event in events] == [
        "project.delete",
        "key.remove",
        "project.create",
        "key.add",
    ]
    for event in events:
        assert event.actor_kind == "user"
        assert event.actor_user_id == alice.user_id
        assert event.actor_label == "alice"
        assert event.origin == "dashboard"
        assert event.source_address == "203.0.113.7"
        assert event.request_id == "req-alice"
        assert event.outcome == "ok"
        assert event.owner_id == alice.user_id
    added = events[-1]
    assert (added.target_kind, added.target_name) == ("key", "laptop")
    assert added.metadata["fingerprint"] == parse_public_key(KEY).fingerprint
    assert events[2].target_kind == "project" and events[2].target_name == "shop"


async def test_a_change_rolled_back_leaves_no_entry(panel: Panel) -> None:
    alice = await user(panel, "alice")
    with pytest.raises(RuntimeError):
        async with panel.pool.acquire() as conn, conn.transaction():
            await panel.projects.create(alice, "shop", conn=conn)
            await panel.env.set(alice, "shop", "MODE", "live", conn=conn)
            raise RuntimeError("the caller gives up")
    assert await mine(panel, alice) == []
    assert await panel.projects.list(alice) == []


async def test_env_names_are_recorded_never_their_values(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.projects.create(alice, "shop")
    await panel.env.set(alice, "shop", "STRIPE_KEY", "sk_live_very-secret-value")
    await panel.env.set(alice, "shop", "STRIPE_KEY", "sk_live_second-secret")
    await panel.env.unset(alice, "shop", "STRIPE_KEY")
    events = await mine(panel, alice, action="env")
    assert [(event.action, event.metadata) for event in events] == [
        ("env.unset", {"name": "STRIPE_KEY"}),
        ("env.set", {"name": "STRIPE_KEY", "change": "changed"}),
        ("env.set", {"name": "STRIPE_KEY", "change": "added"}),
    ]
    stored = "\n".join(await raw_rows(panel))
    assert "STRIPE_KEY" in stored
    assert "very-secret" not in stored and "second-secret" not in stored


async def test_uploads_deploys_and_cancels_are_recorded(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.projects.create(alice, "shop")
    await upload(panel, alice, "shop", app_zip())
    with pytest.raises(ArchiveRejected):
        await upload(panel, alice, "shop", app_zip({"readme.txt": b"no app here"}))
    deployment = await panel.deployments.deploy(alice, "shop")
    await panel.deployments.cancel(alice, "shop", deployment.id)
    events = await mine(panel, alice, project="shop")
    assert [(event.action, event.outcome) for event in events] == [
        ("deployment.cancel", "ok"),
        ("deployment.deploy", "ok"),
        ("archive.upload", "failed"),
        ("archive.upload", "ok"),
        ("project.create", "ok"),
    ]
    assert events[1].metadata["deployment"] == deployment.id
    assert events[1].metadata["archive"] == "v1-app.zip"
    assert events[2].metadata["status"] == "rejected"


async def test_plan_and_balance_changes_carry_from_and_to(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "free")
    await panel.billing.balances.adjust(SYSTEM, alice.owner_id, 50_000, "welcome")
    await panel.billing.subscriptions.change_plan(alice, "shop", "host-0")
    events = await mine(panel, alice)
    plan = next(event for event in events if event.action == "plan.change")
    assert (plan.metadata["from"], plan.metadata["to"]) == ("free", "host-0")
    assert plan.actor_label == "alice"
    credit = next(event for event in events if event.action == "balance.adjustment")
    assert credit.actor_label == "system:tests"
    assert credit.metadata["to"] - credit.metadata["from"] == 50_000
    assert credit.owner_id == alice.user_id


async def test_admin_actions_are_recorded_and_shown_to_the_account(panel: Panel) -> None:
    bob = await user(panel, "bob")
    cli = Actor.system("cli").acting_from("cli")
    await panel.accounts.block(cli, "bob")
    await panel.accounts.unblock(cli, "bob")
    events = await mine(panel, bob)
    assert [(event.action, event.origin, event.actor_label) for event in events] == [
        ("account.unblock", "cli", "system:cli"),
        ("account.block", "cli", "system:cli"),
    ]
    with pytest.raises(PermissionDenied):
        await panel.accounts.block(bob, "bob")
    refused = await mine(panel, bob, action="account.block")
    assert refused[0].outcome == "refused"


async def test_logins_ok_and_failed_with_no_oracle_on_names(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.sessions.open(alice.owner_id, "password", "198.51.100.4")
    with pytest.raises(AuthenticationError) as wrong:
        await panel.accounts.authenticate("alice", "wrong password!", "198.51.100.9")
    with pytest.raises(AuthenticationError) as unknown:
        await panel.accounts.authenticate("nobody", "wrong password!", "198.51.100.9")
    # The same answer for a wrong password and a name with no account.
    assert wrong.value.message == unknown.value.message
    events = await mine(panel, alice, action="login")
    assert [(event.outcome, event.source_address) for event in events] == [
        ("failed", "198.51.100.9"),
        ("ok", "198.51.100.4"),
    ]
    # The unknown name's failure is the operators' alone: no account sees it.
    logins = [event for event in await everything(panel) if event.action == "login"]
    stranger = [event for event in logins if event.target_name == "nobody"]
    assert len(stranger) == 1
    assert (stranger[0].actor_user_id, stranger[0].owner_id) == (None, None)
    bob = await user(panel, "bob")
    assert await mine(panel, bob) == []


async def test_entries_cannot_be_changed_or_deleted(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.projects.create(alice, "shop")
    async with panel.pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_events SET outcome = 'refused'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_events")
        # The retention switch is for the pruner's transaction only, and allows no UPDATE.
        async with conn.transaction():
            await conn.execute("SELECT set_config('ghst.audit_retention', 'on', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE audit_events SET action = 'x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_events")
    assert len(await mine(panel, alice)) == 1


async def test_retention_exports_then_prunes_only_old_entries(panel: Panel, tmp_path: Path) -> None:
    alice = await user(panel, "alice")
    await panel.projects.create(alice, "old")
    await panel.projects.create(alice, "new")
    async with panel.pool.acquire() as conn:
        # Backdate the first entry as if written 400 days ago (a test-only insert).
        await conn.execute(
            "INSERT INTO audit_events (at, actor_kind, actor_user_id, actor_label, origin,"
            " action, target_kind, target_name, owner_id, outcome)"
            " VALUES (now() - interval '400 days', 'user', $1, 'alice', 'dashboard',"
            " 'project.create', 'project', 'ancient', $1, 'ok')",
            alice.owner_id,
        )
    retention = audit_service.AuditService(panel.pool, export_dir=tmp_path, retention_days=365)
    assert await retention.retain() == 1
    exported = await asyncio.to_thread(read_exports, tmp_path)
    assert [entry["target"]["name"] for entry in exported] == ["ancient"]
    assert exported[0]["actor"]["label"] == "alice"
    left = [event.target_name for event in await mine(panel, alice)]
    assert left == ["new", "old"]
    assert await retention.retain() == 0


async def test_a_user_sees_only_their_own_entries(panel: Panel) -> None:
    alice = await user(panel, "alice")
    bob = await user(panel, "bob", address="192.0.2.66")
    await panel.projects.create(alice, "shop")
    await panel.projects.create(bob, "bobs")
    await panel.env.set(bob, "bobs", "TOKEN", "bob-secret")
    assert {event.actor_user_id for event in await mine(panel, alice)} == {alice.user_id}
    assert all(event.target_name != "bobs" for event in await mine(panel, alice, limit=200))
    # Filters cannot widen it: naming bob's project shows alice nothing of bob's.
    assert await mine(panel, alice, project="bobs") == []
    with pytest.raises(PermissionDenied):
        await panel.audit.list(alice, everyone=True)
    # An operator's action on alice's data is in alice's log; an admin sees everyone's.
    await panel.projects.delete(SYSTEM, "shop", "shop")
    assert (await mine(panel, alice))[0].actor_label == "system:tests"
    assert {"alice", "bob"} <= {event.actor_label for event in await everything(panel)}


async def test_a_refused_attempt_on_anothers_project_is_recorded_without_leaking(
    panel: Panel,
) -> None:
    alice = await user(panel, "alice")
    bob = await user(panel, "bob")
    await panel.projects.create(bob, "bobs")
    with pytest.raises(NotFoundError):
        await panel.env.set(alice, "bobs", "X", "1")
    with pytest.raises(NotFoundError):
        await panel.projects.delete(alice, "bobs", "bobs")
    with pytest.raises(NotFoundError):
        await panel.deployments.stop(alice, "bobs")
    with pytest.raises(NotFoundError):
        await panel.deployments.rollback(alice, "bobs", 1)
    refused = await mine(panel, alice)
    assert [(event.action, event.outcome) for event in refused] == [
        ("deployment.rollback", "refused"),
        ("project.stop", "refused"),
        ("project.delete", "refused"),
        ("env.set", "refused"),
    ]
    for event in refused:
        # Only what alice typed: no id, no owner, nothing of bob's.
        assert (event.target_name, event.target_id, event.owner_id) == ("bobs", None, None)
        assert "bob" not in json.dumps(event.metadata)
    # Bob's log is his own: alice's probing does not tell him her name either.
    assert all(event.actor_user_id == bob.user_id for event in await mine(panel, bob))


async def test_refused_attempts_are_deduplicated_and_capped(panel: Panel) -> None:
    alice = await user(panel, "alice")
    bob = await user(panel, "bob")
    await panel.projects.create(bob, "bobs")
    for _ in range(5):  # the same attempt again and again: written once a minute
        with pytest.raises(NotFoundError):
            await panel.projects.delete(alice, "bobs", "bobs")
    assert len(await mine(panel, alice)) == 1
    for number in range(audit_service.UNHAPPY_PER_HOUR + 20):
        with pytest.raises(NotFoundError):
            await panel.projects.delete(alice, f"probe-{number}", f"probe-{number}")
    assert len(await mine(panel, alice, limit=200)) == audit_service.UNHAPPY_PER_HOUR
    # Her successful changes are still recorded.
    await panel.projects.create(alice, "shop")
    assert (await mine(panel, alice))[0].action == "project.create"


async def test_one_request_id_ties_a_commands_entries(panel: Panel) -> None:
    alice = await user(panel, "alice")
    command = alice.acting_from("command", source_address="192.0.2.1", request_id="cmd-42")
    await panel.projects.create(command, "shop")
    await panel.env.set(command, "shop", "A", "1")
    await panel.env.set(command, "shop", "B", "2")
    await panel.projects.create(alice, "other")
    tied = [event for event in await mine(panel, alice) if event.request_id == "cmd-42"]
    assert [event.action for event in tied] == ["env.set", "env.set", "project.create"]
    assert {event.origin for event in tied} == {"command"}


async def test_pages_go_back_in_time_with_filters(panel: Panel) -> None:
    alice = await user(panel, "alice")
    for number in range(7):
        await panel.projects.create(alice, f"proj-{number}")
    first = await mine(panel, alice, limit=3)
    second = await mine(panel, alice, limit=3, before_id=first[-1].id)
    third = await mine(panel, alice, limit=3, before_id=second[-1].id)
    names = [event.target_name for event in first + second + third]
    assert names == ["proj-6", "proj-5", "proj-4", "proj-3", "proj-2", "proj-1", "proj-0"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await mine(panel, alice, since=later) == []
    assert [event.target_name for event in await mine(panel, alice, project="proj-3")] == ["proj-3"]


async def test_a_token_reads_only_its_projects_entries(panel: Panel) -> None:
    account = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    alice = Actor.for_user(account)
    await panel.projects.create(alice, "shop")
    await panel.projects.create(alice, "diary")
    token = Actor.for_token(
        account, token_id=7, prefix="ghst_ab12", scopes=frozenset({"read"}),
        projects=frozenset({"shop"}),
    )  # fmt: skip
    assert [event.target_name for event in await mine(panel, token, project="shop")] == ["shop"]
    with pytest.raises(PermissionDenied):
        await mine(panel, token)
    with pytest.raises(PermissionDenied):
        await mine(panel, token, project="diary")
    deploy_only = Actor.for_token(account, token_id=8, prefix="ghst_cd34", scopes=frozenset())
    with pytest.raises(PermissionDenied):
        await mine(panel, deploy_only)


async def test_a_suspended_projects_upload_is_refused_and_recorded(panel: Panel) -> None:
    alice = await user(panel, "alice")
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    since = await run_out(panel, alice.owner_id)
    assert await panel.billing.suspensions.run(now=since + timedelta(days=3)) is not None
    with pytest.raises(SuspendedError):
        await panel.archives.begin_upload(alice, "shop", "app.zip")
    refused = (await mine(panel, alice, action="archive.upload"))[0]
    assert (refused.outcome, refused.metadata) == ("refused", {"reason": "SuspendedError"})
    # The money that ran out is in her log too, from and to.
    spent = next(
        event for event in await mine(panel, alice) if event.action == "balance.adjustment"
    )
    assert spent.metadata["to"] < 0 <= spent.metadata["from"]


async def test_repeated_failed_logins_are_kept_once_per_address(panel: Panel) -> None:
    alice = await user(panel, "alice")
    for address in ("198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"):
        with pytest.raises(AuthenticationError):
            await panel.accounts.authenticate("alice", "not her password", address)
    failed = await mine(panel, alice, action="login")
    assert [event.source_address for event in failed] == ["198.51.100.2", "198.51.100.1"]


async def test_tokens_are_audited_without_their_secret(panel: Panel) -> None:
    """Creating and revoking a token, and logging in with a wrong or revoked one, each leave an
    entry the owner sees; neither the secret nor its hash is ever stored in the log."""
    from core.identity.access_tokens import secret_hash

    alice = await user(panel, "alice")
    created = await panel.access_tokens.create(alice, "ci", ["read", "deploy"])
    login = await panel.access_tokens.authenticate("alice", created.secret, "198.51.100.9")
    await panel.access_tokens.open_login(login, "password", "198.51.100.9")
    await panel.access_tokens.revoke(alice, "ci")
    with pytest.raises(AuthenticationError):
        await panel.access_tokens.authenticate("alice", created.secret, "198.51.100.9")
    with pytest.raises(NotFoundError):
        await panel.access_tokens.revoke(alice, "ci")  # already gone: a refused attempt
    events = await mine(panel, alice)
    assert [(e.action, e.outcome) for e in events] == [
        ("token.revoke", "refused"),
        ("login", "failed"),
        ("token.revoke", "ok"),
        ("login", "ok"),
        ("token.create", "ok"),
    ]
    by_action = {(e.action, e.outcome): e for e in events}
    made = by_action[("token.create", "ok")]
    assert made.metadata["scopes"] == ["deploy", "read"] and made.target_name == "ci"
    token_login = by_action[("login", "ok")]
    assert token_login.actor_kind == "token" and token_login.token_id == created.token.id
    assert token_login.source_address == "198.51.100.9"
    assert by_action[("login", "failed")].metadata == {
        "reason": "AuthenticationError",
        "method": "token",
    }
    for text in await raw_rows(panel):
        assert created.secret not in text and secret_hash(created.secret).hex() not in text
