"""The admin views over SSH, end to end with OpenSSH: an admin blocks a user from the admin
app, and that user's live dashboard ends within 5 s; a user has no way in."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command

pytestmark = pytest.mark.e2e


async def test_an_admin_blocks_a_user_whose_dashboard_ends_within_5_s(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    identities: dict[str, Path] = {}
    for name in ("alice", "bob"):
        user = await create_user(panel, name)
        key = new_key()
        await add_key(panel, user, key)
        identities[name] = write_private_key(key, tmp_path / f"id_{name}")
    await panel.accounts.set_role(SYSTEM, "alice", "admin")
    terminals: list[OpenSSHTerminal] = []
    try:
        for name in ("alice", "bob"):
            terminals.append(
                await OpenSSHTerminal.start(
                    openssh_command(ssh_server.port, name, identities[name]), width=120, height=30
                )
            )
        alice, bob = terminals
        await bob.wait_for("Signed in as bob")
        await alice.wait_for("Signed in as alice")
        await alice.wait_for("Admin")
        alice.send(":")
        await alice.wait_for("bob@example.com")
        alice.send("/")
        alice.send("bob")
        await alice.wait_until(lambda: "alice@example.com" not in alice.text(), "the filter")
        alice.send("\r")  # closes the prompt, back to the table
        alice.send("b")
        await alice.wait_for("Their logins are refused")
        alice.send("y")
        await bob.wait_exit(within=5)  # the bound: the blocked dashboard is gone
        await alice.wait_for("block: bob")
    finally:
        for terminal in terminals:
            await terminal.close()
