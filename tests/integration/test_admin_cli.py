"""`ghst user role` and `ghst admin` as an operator runs them on the host: real processes,
the app's screen read through a pseudo-terminal."""

from __future__ import annotations

from core.panel import Panel
from core.settings import Settings
from tests.actors import acting
from tests.e2e.terminal import OpenSSHTerminal
from tests.integration.test_sshd_cli import GHST, ghst_env, run_ghst

PASSWORD = "correct horse battery"


async def test_ghst_user_role_grants_and_lists_roles(panel: Panel, settings: Settings) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    session = await panel.sessions.open(bob.id, "password", "10.0.0.1")
    env = ghst_env(settings)

    status, out, _ = await run_ghst("user", "role", "bob", "operator", env=env)
    assert (status, out.strip()) == (
        0,
        "bob is now operator: their open sessions end within seconds",
    )
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    status, out, _ = await run_ghst("user", "role", "alice", "admin", env=env)
    assert status == 0
    assert (await panel.accounts.get(1)).is_admin

    status, out, _ = await run_ghst("user", "list", env=env)
    rows = {line.split()[0]: line.split(None, 3)[-1] for line in out.splitlines()[1:]}
    assert rows == {"alice": "active, admin", "bob": "active, operator"}

    status, _, err = await run_ghst("user", "role", "bob", "root", env=env)
    assert status == 2 and "invalid choice: 'root'" in err
    status, _, err = await run_ghst("user", "role", "nobody", "admin", env=env)
    assert (status, err.strip()) == (3, "ghst: No account named 'nobody'.")


async def test_ghst_admin_shows_the_views_in_a_terminal(panel: Panel, settings: Settings) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    await panel.subscriptions.create_project(acting(alice), "shop")
    env = ghst_env(settings, TERM="xterm-256color")
    command = ["env", "-i", *(f"{key}={value}" for key, value in env.items()), str(GHST), "admin"]
    terminal = await OpenSSHTerminal.start(command, width=100, height=30)
    try:
        await terminal.wait_for("bob@example.com")
        assert "alice@example.com" in terminal.text()
        terminal.send(":projects\r")
        await terminal.wait_for("free v1")
        assert "shop" in terminal.text()
        terminal.send("?")
        await terminal.wait_for("Keys of :projects")
        terminal.send("\x1b")
        await terminal.wait_gone("Keys of :projects")
        terminal.send("\x11")  # ctrl+q
        assert await terminal.wait_exit() == 0
    finally:
        await terminal.close()
