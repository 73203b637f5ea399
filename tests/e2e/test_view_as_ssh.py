"""View as user over SSH, end to end with OpenSSH: an admin's `:`, `v` on bob's row, bob's
own dashboard under the read-only banner, a write refused, esc back to the admin app."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM, acting
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command

pytestmark = pytest.mark.e2e


async def test_an_admin_views_a_users_dashboard_over_ssh(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, alice, key)
    identity = write_private_key(key, tmp_path / "id_alice")
    bob = await create_user(panel, "bob")
    await panel.projects.create(acting(bob), "bobshop")
    await panel.accounts.set_role(SYSTEM, "alice", "admin")
    terminal = await OpenSSHTerminal.start(
        openssh_command(ssh_server.port, "alice", identity), width=120, height=30
    )
    try:
        await terminal.wait_for("Signed in as alice")
        terminal.send(":")
        await terminal.wait_for("bob@example.com")
        terminal.send("/")
        terminal.send("bob")
        await terminal.wait_until(lambda: "alice@example.com" not in terminal.text(), "the filter")
        terminal.send("\r")
        terminal.send("v")
        await terminal.wait_for("VIEWING AS bob · READ-ONLY")
        await terminal.wait_for("Viewing the dashboard of bob")
        terminal.send("j")
        await terminal.wait_for("bobshop")
        terminal.send("\x1b")  # back to bob's home
        await terminal.wait_for("Viewing the dashboard of bob")
        terminal.send("l")  # log out: the admin's own login is not the viewer's to end
        await terminal.wait_for("Viewing as bob: read-only.")
        terminal.send("\x1b")
        await terminal.wait_until(lambda: "READ-ONLY" not in terminal.text(), "back to :users")
        await terminal.wait_for("bob@example.com")
        assert [p.name for p in await panel.projects.list(acting(bob))] == ["bobshop"]
    finally:
        await terminal.close()
