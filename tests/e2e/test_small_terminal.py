"""The dashboard in an 80x24 terminal over a real OpenSSH client, the screen read with pyte."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import as_user
from tests.e2e.helpers import add_key, create_user, new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command
from tests.tui.test_deployments import upload

pytestmark = pytest.mark.e2e


async def test_home_and_a_project_in_80x24(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    user = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, user, key)
    await panel.projects.create(as_user(user.id), "shop")
    uploads = [await upload(panel, user.id, "shop") for _ in range(3)]
    identity = write_private_key(key, tmp_path / "id_ed25519")

    terminal = await OpenSSHTerminal.start(
        openssh_command(ssh_server.port, "alice", identity), width=80, height=24
    )
    try:
        await terminal.wait_for("1 active (this one)")
        screen = terminal.screen.display
        assert any("SSH keys       1 key" in row for row in screen), terminal.text()
        assert "^q Quit" in screen[-1], terminal.text()

        terminal.send("j")
        await terminal.wait_for("Projects · 1")
        terminal.send("\r")  # the only project
        await terminal.wait_for(uploads[0].name)
        screen = terminal.screen.display
        for archive in uploads:
            assert any(archive.name in row for row in screen), terminal.text()
        assert "^q Quit" in screen[-1], terminal.text()
    finally:
        await terminal.close()
