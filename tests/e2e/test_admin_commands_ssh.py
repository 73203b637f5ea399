"""`ssh panel -- admin ...` through OpenSSH, as an operator's script runs it: an admin's token
with the `admin` scope blocks a user, whose live dashboard ends within 5 s; a user's token
granted `admin` is refused (exit 4) and the attempt is in the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM
from tests.e2e.terminal import OpenSSHTerminal, openssh_command
from tests.e2e.test_commands_ssh import run_with_token, ssh
from tests.e2e.transfers import Account, account, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def make_token(server: GhstServer, who: Account, name: str, scopes: str) -> str:
    made = await run(ssh(server, who, "tokens", "create", name, "--scope", scopes))
    assert made.status == 0, made.stderr
    return made.stdout.strip()


async def test_an_admin_token_blocks_a_user_and_a_users_admin_token_is_refused(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    bob = await account(panel, tmp_path, "bob", projects=("shop",))
    await account(panel, tmp_path, "carol")
    await panel.accounts.set_role(SYSTEM, "alice", "admin")
    ops = await make_token(ssh_server, alice, "ops", "admin")
    sneaky = await make_token(ssh_server, bob, "sneaky", "read,deploy,admin")

    # Bob's token, granted `admin`, is a user's token: every admin verb is refused.
    for command in (("admin", "block", "carol", "--yes"), ("admin", "users", "--json")):
        refused = await run_with_token(ssh_server, tmp_path, "bob", sneaky, *command)
        assert (refused.status, refused.stdout) == (4, ""), refused.output
        assert "needs an administrator" in refused.stderr
    assert not (await panel.admin.user(SYSTEM, "carol")).blocked

    assert ssh_server.port is not None
    dashboard = await OpenSSHTerminal.start(
        openssh_command(ssh_server.port, "bob", bob.identity), width=120, height=30
    )
    try:
        await dashboard.wait_for("Signed in as bob")
        blocked = await run_with_token(
            ssh_server, tmp_path, "alice", ops, "admin", "block", "bob", "--yes", "--json"
        )
        assert blocked.status == 0, blocked.output
        assert json.loads(blocked.stdout) == {"blocked": True, "role": "user", "username": "bob"}
        await dashboard.wait_exit(within=5)
    finally:
        await dashboard.close()
    assert (await run(ssh(ssh_server, bob, "whoami"))).status == 255  # refused at login

    # Alice reads the log with her key: bob's token's attempts, and her token's block.
    log = await run(
        ssh(ssh_server, alice, "admin", "audit", "action:admin", "outcome:refused", "--json")
    )
    assert log.status == 0, log.stderr
    seen = [
        (e["action"], e["target"]["name"], e["actor"]["kind"], e["origin"])
        for e in json.loads(log.stdout)
    ]
    assert seen == [
        ("admin.users", None, "token", "command"),
        ("admin.block", "carol", "token", "command"),
    ]
    done = await run(ssh(ssh_server, alice, "admin", "audit", "action:account.block", "--json"))
    [entry] = json.loads(done.stdout)
    assert (entry["target"]["name"], entry["actor"]["kind"]) == ("bob", "token")
    assert entry["actor"]["label"].endswith(" of alice") and ops not in done.stdout
