"""The commands against a real panel (PostgreSQL, Redis, storage): their JSON shapes as
snapshots, uploads from stdin through the SFTP path, and what a hostile tenant or a limited
token can reach."""

from __future__ import annotations

import asyncio

import pytest

from commands.dispatch import run_command
from core.actor import Actor
from core.identity.accounts import User
from core.panel import Panel
from tests.actors import acting
from tests.commands.snapshots import assert_snapshot
from tests.commands.streams import Captured, Stdin, run
from tests.e2e.helpers import new_key, public_line
from tests.e2e.transfers import app_zip, big_zip, eventually

pytestmark = pytest.mark.timeout(120)


async def sign_up(panel: Panel, name: str) -> User:
    return await panel.accounts.sign_up(name, f"{name}@example.com", "correct horse battery")


def token(user: User, scopes: set[str], projects: set[str] | None = None) -> Actor:
    return Actor.for_token(
        user,
        token_id=1,
        prefix="ghst_test",
        scopes=frozenset(scopes),
        projects=frozenset(projects) if projects is not None else None,
    )


async def test_the_json_shapes_of_the_commands(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.keys.add(me, public_line(new_key(), "laptop"), "laptop")

    shapes = {}
    for name, line, stdin in [
        ("whoami", "whoami --json", None),
        ("projects_create", "projects create diary --json", None),
        ("upload", "upload diary --json", app_zip()),
        ("projects_list", "projects list --json", None),
        ("projects_info", "projects info diary --json", None),
        ("status", "status diary --json", None),
        ("deployments", "deployments diary --json", None),
        ("env_set", "env diary set API_KEY=hunter22 MODE=prod --json", None),
        ("env_list", "env diary --json", None),
        ("keys_list", "keys list --json", None),
        ("billing_balance", "billing balance --json", None),
        ("billing_plans", "billing plans --json", None),
        ("billing_invoices", "billing invoices --json", None),
    ]:
        ran = await run(line, me, panel, stdin)
        assert ran.status == 0, (line, ran.stderr)
        assert ran.stdout.count("\n") == 1  # one object or array
        shapes[name] = ran.json()
    for name, data in shapes.items():
        assert_snapshot(name, data)


async def test_text_output_is_data_on_stdout_and_notices_on_stderr(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    created = await run("projects create diary", me, panel)
    assert (created.status, created.stdout) == (0, "diary\n")
    assert "upload diary < app.zip" in created.stderr
    uploaded = await run("upload diary", me, panel, app_zip())
    assert (uploaded.status, uploaded.stdout) == (0, "v1-app.zip\n")
    listed = await run("projects", me, panel)
    assert listed.stdout.splitlines()[0].split() == ["NAME", "STATE", "VERSIONS", "LAST", "UPLOAD"]
    assert listed.stdout.splitlines()[1].split()[:3] == ["diary", "new", "1"]
    assert "\x1b" not in listed.stdout + listed.stderr


async def test_upload_from_stdin_takes_the_sftp_path_and_its_refusals(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.projects.create(me, "diary")

    refused = await run("upload diary", me, panel, app_zip({"index.html": b"no dockerfile"}))
    assert refused.status == 2
    assert "Dockerfile" in refused.stderr
    (kept,) = await panel.archives.list(me, "diary")
    assert kept.status == "rejected"  # kept in the history, as with scp

    empty = await run("upload diary", me, panel, b"")
    assert (empty.status, empty.stderr) == (2, "Nothing arrived on stdin: upload NAME < app.zip\n")

    named = await run("upload diary --filename notes.txt", me, panel, app_zip())
    assert (named.status, named.stderr) == (
        2,
        "'notes.txt' is not an archive name: upload a .zip, .tar, .tar.gz or .tgz file.\n",
    )
    stored = await run("upload diary --filename site.zip", me, panel, app_zip())
    assert (stored.status, stored.stdout) == (0, "v1-site.zip\n")  # refusals take no number


async def test_stdin_past_the_quota_is_refused_while_it_streams(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.projects.create(me, "diary")
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE users SET storage_quota_bytes = $1 WHERE id = $2", 2 << 20, alice.id
        )
    huge = big_zip(8 << 20)

    stdin = Stdin(huge)
    captured = Captured()
    status = await run_command("upload diary", me, panel, captured, stdin=stdin)
    assert status == 5
    assert "quota" in captured.stderr.text
    assert stdin.taken < len(huge)  # refused as it came, not after reading it all
    assert await panel.archives.list(me, "diary") == []
    assert await panel.storage.pending_uploads() == []


async def test_another_tenants_project_reads_exactly_like_a_missing_one(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    bob = await sign_up(panel, "bob")
    await panel.projects.create(acting(bob), "bobsite")
    await panel.env.set(acting(bob), "bobsite", "SECRET", "bobs-secret")
    me = acting(alice)
    for line in [
        "projects info {}",
        "status {}",
        "deployments {}",
        "env {} list --reveal",
        "env {} set SECRET=mine",
        "deploy {}",
        "projects delete {} --yes",
        "logs {}",
    ]:
        theirs = await run(line.format("bobsite"), me, panel, app_zip())
        missing = await run(line.format("nosuch"), me, panel, app_zip())
        assert theirs.status == missing.status == 3, (line, theirs.stderr)
        assert theirs.stderr.replace("bobsite", "X") == missing.stderr.replace("nosuch", "X")
    uploaded = await run("upload bobsite", me, panel, app_zip())
    assert uploaded.status == 3
    assert await panel.archives.list(acting(bob), "bobsite") == []
    assert await panel.env.list(acting(bob), "bobsite") != []
    assert (await panel.env.list(acting(bob), "bobsite"))[0].value == "bobs-secret"


@pytest.mark.parametrize("name", ["../bobsite", "bobsite/../x", "/etc/passwd", "..", "-rf"])
async def test_a_path_in_a_project_name_reaches_nothing(panel: Panel, name: str) -> None:
    alice = await sign_up(panel, "alice")
    bob = await sign_up(panel, "bob")
    await panel.projects.create(acting(bob), "bobsite")
    for line in [f"upload '{name}'", f"projects create '{name}'", f"status '{name}'"]:
        ran = await run(line, acting(alice), panel, app_zip())
        assert ran.status in (2, 3), (line, ran.stderr)
    assert [p.name for p in await panel.projects.list(acting(alice))] == []
    assert await panel.archives.list(acting(bob), "bobsite") == []


async def test_tokens_are_held_to_their_scopes_and_projects_on_a_real_panel(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.projects.create(me, "diary")
    await panel.projects.create(me, "shop")

    reader = token(alice, {"read"})
    assert (await run("upload diary", reader, panel, app_zip())).status == 4
    assert (await run("env diary set A=1", reader, panel)).status == 4
    assert (await run("status diary", reader, panel)).status == 0
    assert (await run("keys list", reader, panel)).status == 4  # keys stay with the person

    deployer = token(alice, {"deploy"}, {"diary"})
    assert (await run("upload diary", deployer, panel, app_zip())).status == 0
    assert (await run("upload shop", deployer, panel, app_zip())).status == 4
    assert await panel.archives.list(me, "shop") == []
    listed = await run("projects list --json", token(alice, {"read"}, {"diary"}), panel)
    assert [p["name"] for p in listed.json()] == ["diary"]

    # Each refusal is in alice's audit log under the command that was tried, noun and verb.
    refused = [
        (event.action, event.target_name)
        for event in await panel.audit.list(me)
        if event.outcome == "refused"
    ]
    for attempt in (("command.env.set", "diary"), ("command.upload", "shop")):
        assert attempt in refused, refused

    whoami = await run("whoami --json", deployer, panel)
    assert whoami.json() == {
        "actor": "token",
        "email": "alice@example.com",
        "projects": ["diary"],
        "scopes": ["deploy"],
        "username": "alice",
    }


async def test_env_keys_and_delete_round_trips(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.projects.create(me, "diary")
    assert (await run("env diary set 'GREETING=hello world' N=1", me, panel)).status == 0
    masked = await run("env diary", me, panel)
    assert "hello world" not in masked.stdout
    revealed = await run("env diary list --reveal --json", me, panel)
    assert {v["name"]: v["value"] for v in revealed.json()} == {
        "GREETING": "hello world",
        "N": "1",
    }
    assert (await run("env diary unset N --yes", me, panel)).status == 0
    assert (await run("env diary unset N --yes", me, panel)).status == 3

    key = new_key()
    added = await run("keys add --name ci", me, panel, public_line(key, "ci").encode())
    assert added.status == 0, added.stderr
    assert (await run("keys rm ci", me, panel)).status == 2  # needs --yes
    assert (await run("keys rm ci --yes", me, panel)).status == 0
    assert await panel.keys.list(me) == []

    assert (await run("projects delete diary", me, panel)).status == 2
    assert [p.name for p in await panel.projects.list(me)] == ["diary"]
    deleted = await run("projects delete diary --yes", me, panel)
    assert deleted.status == 0, deleted.stderr
    assert await panel.projects.list(me) == []


async def test_a_deploy_only_token_for_one_project_can_deploy_and_wait(panel: Panel) -> None:
    alice = await sign_up(panel, "alice")
    me = acting(alice)
    await panel.projects.create(me, "diary")
    await panel.projects.create(me, "shop")
    for project in ("diary", "shop"):
        assert (await run(f"upload {project}", me, panel, app_zip())).status == 0
    ci = token(alice, {"deploy"}, {"diary"})
    assert (await run("deploy shop", ci, panel)).status == 4

    # No worker runs here: the command waits on the queued deployment until it is cancelled.
    waiting = asyncio.create_task(run("deploy diary --wait --json", ci, panel))

    async def queued() -> list[int]:
        history = await panel.deployments.list(me, "diary")
        return [d.id for d in history if d.state == "queued"]

    async def is_queued() -> bool:
        return bool(await queued())

    await eventually(is_queued, "the deployment to be queued")
    (deployment,) = await queued()
    await panel.deployments.cancel(me, "diary", deployment)
    ended = await asyncio.wait_for(waiting, 30)
    assert ended.status == 1
    assert ended.json()["state"] == "cancelled"
    assert "cancelled" in ended.stderr
    assert await panel.deployments.list(me, "shop") == []


async def test_tokens_and_audit_commands(panel: Panel) -> None:
    """`tokens create` prints the secret once (stdout, nothing else there), `list` never shows
    it, `revoke` needs --yes without a terminal; `audit` shows what was done, newest first,
    with the command's origin; a token can neither manage tokens nor read another's log."""
    alice = await sign_up(panel, "alice")
    me = acting(alice).acting_from("command", source_address="192.0.2.8", request_id="req-1")
    await panel.projects.create(me, "diary")

    made = await run("tokens create ci --scope read,deploy --project diary --json", me, panel)
    assert made.status == 0, made.stderr
    shape = made.json()
    secret = shape["token"]
    assert secret.startswith("ghst_") and secret.startswith(shape["prefix"])
    assert "copy it now" in made.stderr
    assert_snapshot("tokens_create", {**shape, "token": "ghst_<secret>", "prefix": "ghst_<prefix>"})
    plain = await run("tokens create deploy-bot --scope deploy --expires-in 7d", me, panel)
    assert plain.status == 0 and plain.stdout.startswith("ghst_") and plain.stdout.count("\n") == 1

    listed = await run("tokens list --json", me, panel)
    assert [t["name"] for t in listed.json()] == ["deploy-bot", "ci"]
    assert secret not in listed.stdout and plain.stdout.strip() not in listed.stdout
    assert_snapshot("tokens_list", [{**t, "prefix": "ghst_<prefix>"} for t in listed.json()])
    for line, status in [
        ("tokens create x --scope root", 2),  # no such scope: the message names the real ones
        ("tokens create x --scope read --expires-in 400d", 2),
        ("tokens revoke ci", 2),  # destructive: --yes is needed without a terminal
        ("tokens revoke nothing --yes", 3),
    ]:
        ran = await run(line, me, panel)
        assert ran.status == status, (line, ran.stderr)
        assert ran.stdout == "" and ran.stderr
    assert (await run("tokens revoke ci --yes", me, panel)).status == 0

    # A token may not manage tokens, whatever its scopes.
    ci = token(alice, {"read", "deploy", "logs", "env:write"})
    assert (await run("tokens list", ci, panel)).status == 4
    assert (await run("tokens create more --scope read", ci, panel)).status == 4

    log = await run("audit --json --limit 5", me, panel)
    assert log.status == 0, log.stderr
    entries = log.json()
    assert [(e["action"], e["outcome"], e["actor"]["label"]) for e in entries] == [
        ("token.create", "refused", "token ghst_test of alice"),  # the token's own attempt
        ("token.revoke", "ok", "alice"),
        ("token.revoke", "refused", "alice"),  # no token named "nothing"
        ("token.create", "ok", "alice"),
        ("token.create", "ok", "alice"),
    ]
    by_alice = entries[1:]
    assert {(e["origin"], e["request_id"], e["source_address"]) for e in by_alice} == {
        ("command", "req-1", "192.0.2.8")
    }
    assert_snapshot(
        "audit",
        {**entries[1], "at": "<at>", "actor": {**entries[1]["actor"], "user_id": "<id>"},
         "target": {**entries[1]["target"], "id": "<id>", "owner_id": "<id>"},
         "metadata": {**entries[1]["metadata"], "prefix": "ghst_<prefix>"}},
    )  # fmt: skip
    assert secret not in log.stdout
    text = await run("audit --action project.create", me, panel)
    assert text.status == 0 and "project.create" in text.stdout and "token." not in text.stdout
    assert (await run("audit --since nonsense", me, panel)).status == 2

    # Bob sees nothing of Alice's; a token limited to a project must name it.
    bob = acting(await sign_up(panel, "bob"))
    theirs = await run("audit --json", bob, panel)
    assert theirs.status == 0 and "alice" not in theirs.stdout and "diary" not in theirs.stdout
    limited = token(alice, {"read"}, {"diary"})
    assert (await run("audit", limited, panel)).status == 4
    assert (await run("audit --project diary", limited, panel)).status == 0
