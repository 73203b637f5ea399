"""The dashboard over SSH, end to end: real clients with a PTY, the screen read with pyte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM, acting
from tests.e2e.helpers import (
    PASSWORD,
    add_key,
    create_user,
    new_key,
    sign_up_on_screen,
    write_private_key,
)
from tests.e2e.terminal import (
    AsyncsshTerminal,
    KeyboardInteractiveClient,
    OpenSSHTerminal,
    openssh_command,
)
from tests.services import ssh_client_command

pytestmark = pytest.mark.e2e


async def test_visitor_signs_up_resizes_and_logs_out(ssh_server: GhstServer, panel: Panel) -> None:
    # No key, an unknown name: keyboard-interactive with no prompt leads to the sign-up screen.
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "newbie", client_factory=KeyboardInteractiveClient
    )
    try:
        await terminal.wait_for("Sign up")
        await sign_up_on_screen(terminal, "newbie")
        user = await panel.accounts.find_by_username("newbie")
        assert user is not None
        assert await panel.sessions.active_count(acting(user.id)) == 1

        # The header's right edge (the signed-in user) moves with the window.
        assert "● newbie" in terminal.screen.display[0][60:]
        terminal.change_size(60, 24)
        await terminal.wait_until(
            lambda: "● newbie" in terminal.screen.display[0], "the header laid out at 60 columns"
        )
        await terminal.wait_for("Signed in as newbie")

        terminal.send("l")  # log out
        assert await terminal.wait_closed() == 0
        assert "Logged out. Bye!" in terminal.transcript.decode(errors="replace")
        assert await panel.sessions.active_count(acting(user.id)) == 0
    finally:
        await terminal.close()


async def test_visitor_key_is_offered_at_sign_up_then_logs_in(
    ssh_server: GhstServer, panel: Panel
) -> None:
    key = new_key()
    terminal = await AsyncsshTerminal.connect(ssh_server.port, "keyholder", client_keys=[key])
    try:
        await terminal.wait_for("Attach key SHA256:")
        await sign_up_on_screen(terminal, "keyholder")
    finally:
        await terminal.close()
    user = await panel.accounts.find_by_username("keyholder")
    assert user is not None
    [attached] = await panel.keys.list(acting(user.id))
    assert attached.fingerprint == key.get_fingerprint("sha256")

    # The attached key now logs its owner straight in.
    terminal = await AsyncsshTerminal.connect(ssh_server.port, "keyholder", client_keys=[key])
    try:
        await terminal.wait_for("Signed in as keyholder")
    finally:
        await terminal.close()


async def test_openssh_client_logs_in_by_key_resizes_and_quits(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    user = await create_user(panel, "alice")
    key = new_key()
    await add_key(panel, user, key)
    identity = write_private_key(key, tmp_path / "id_ed25519")

    terminal = await OpenSSHTerminal.start(
        openssh_command(ssh_server.port, "alice", identity), width=100, height=30
    )
    try:
        await terminal.wait_for("Signed in as alice")
        # Colours arrive as 24-bit SGR sequences (TEXTUAL_COLOR_SYSTEM=truecolor).
        assert b"\x1b[38;2;" in terminal.transcript
        terminal.change_size(64, 24)
        await terminal.wait_until(
            lambda: "● alice" in terminal.screen.display[0], "the header laid out at 64 columns"
        )
        terminal.send("\x11")  # Ctrl+Q
        assert await terminal.wait_exit() == 0
        await terminal.wait_for("Bye!")
    finally:
        await terminal.close()


async def test_a_form_typed_in_one_burst_fills_the_right_fields(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    """Fast typing over a slow link: keys, Tabs and Enter reach the server in one packet."""
    identity = write_private_key(new_key(), tmp_path / "id_ed25519")
    terminal = await OpenSSHTerminal.start(
        openssh_command(ssh_server.port, "carol", identity), width=100, height=30
    )
    try:
        await terminal.wait_for("Create account")
        await terminal.wait_focus("Email")
        terminal.send(f"carol@example.com\t{PASSWORD}\t{PASSWORD}\r")
        await terminal.wait_for("Signed in as carol")
        user = await panel.accounts.find_by_username("carol")
        assert user is not None and user.email == "carol@example.com"
        assert await panel.accounts.authenticate("carol", PASSWORD, "127.0.0.1") == user
    finally:
        await terminal.close()


async def test_password_login(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "bob")
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "bob", password=PASSWORD, preferred_auth="password"
    )
    try:
        await terminal.wait_for("Signed in as bob")
    finally:
        await terminal.close()


async def test_keyboard_interactive_password_login(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "carol")
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "carol", password=PASSWORD, preferred_auth="keyboard-interactive"
    )
    try:
        await terminal.wait_for("Signed in as carol")
    finally:
        await terminal.close()


async def test_invalid_utf8_does_not_break_the_session(ssh_server: GhstServer) -> None:
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "utfail", client_factory=KeyboardInteractiveClient
    )
    try:
        await terminal.wait_focus("Email")  # the username is prefilled
        terminal.send(b"ab\xff\xfe\xc3(cd")  # invalid UTF-8: replaced, not fatal
        await terminal.wait_for("ab\N{REPLACEMENT CHARACTER}")
        await terminal.wait_for("(cd")
        # A character split across two packets is put back together.
        terminal.send("é".encode()[:1])
        terminal.send("é".encode()[1:] + b"!")
        await terminal.wait_for("(cdé!")
        terminal.send("\x0c")  # Ctrl+L: still handled as a key, to the login screen
        await terminal.wait_for("Log in")
        terminal.send("\x11")  # Ctrl+Q
        assert await terminal.wait_closed() == 0
    finally:
        await terminal.close()


async def test_a_20_kb_paste_lands_in_one_piece(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "paster")
    terminal = await AsyncsshTerminal.connect(
        ssh_server.port, "paster", password=PASSWORD, preferred_auth="password"
    )
    try:
        await terminal.wait_for("Signed in as paster")
        terminal.send("k")
        await terminal.wait_for("Add key")
        terminal.send("a")
        await terminal.wait_for("Add an SSH key")
        pasted = "ssh-ed25519 " + "A" * 20_000
        terminal.send(b"\x1b[200~" + pasted.encode() + b"\x1b[201~")
        await terminal.wait_for("A" * 50)  # the area scrolled to the end of the line
        terminal.send("\r")  # submit: core refuses it, the dialog says why and stays
        await terminal.wait_for("not a valid ssh-ed25519 key")
        terminal.send("\x1b")  # a lone Escape (after the escape delay): cancel
        await terminal.wait_gone("Add an SSH key")
        await terminal.wait_for("SSH keys")
    finally:
        await terminal.close()


async def test_wrong_password_is_refused(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "dave")
    for method in ("password", "keyboard-interactive"):
        with pytest.raises(asyncssh.PermissionDenied):
            await AsyncsshTerminal.connect(
                ssh_server.port, "dave", password="not the password", preferred_auth=method
            )


async def test_unknown_key_of_a_known_user_is_refused(ssh_server: GhstServer, panel: Panel) -> None:
    await create_user(panel, "erin")
    with pytest.raises(asyncssh.PermissionDenied):
        await AsyncsshTerminal.connect(
            ssh_server.port, "erin", client_keys=[new_key()], preferred_auth="publickey"
        )


async def test_key_of_another_account_is_refused(ssh_server: GhstServer, panel: Panel) -> None:
    alice = await create_user(panel, "alice")
    await create_user(panel, "mallory")
    key = new_key()
    await add_key(panel, alice, key)
    with pytest.raises(asyncssh.PermissionDenied):
        await AsyncsshTerminal.connect(
            ssh_server.port, "mallory", client_keys=[key], preferred_auth="publickey"
        )


async def test_blocked_user_is_refused(ssh_server: GhstServer, panel: Panel) -> None:
    user = await create_user(panel, "frank")
    key = new_key()
    await add_key(panel, user, key)
    await panel.accounts.block(SYSTEM, "frank")
    with pytest.raises(asyncssh.PermissionDenied):
        await AsyncsshTerminal.connect(
            ssh_server.port, "frank", client_keys=[key], preferred_auth="publickey"
        )
    with pytest.raises(asyncssh.PermissionDenied):
        await AsyncsshTerminal.connect(
            ssh_server.port, "frank", password=PASSWORD, preferred_auth="password"
        )


async def test_a_password_never_opens_a_visitor_session(ssh_server: GhstServer) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await AsyncsshTerminal.connect(
            ssh_server.port, "nobody", password=PASSWORD, preferred_auth="password"
        )


async def test_a_command_without_pty_runs_and_an_unknown_one_gets_usage_and_status_2(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    user = await create_user(panel, "grace")
    key = new_key()
    await add_key(panel, user, key)
    async with asyncssh.connect(
        "127.0.0.1",
        ssh_server.port,
        username="grace",
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
    ) as conn:
        unknown = await conn.run("frobnicate")
        whoami = await conn.run("whoami")
    assert unknown.exit_status == 2
    assert "invalid choice: 'frobnicate'" in str(unknown.stderr)
    assert not unknown.stdout
    assert whoami.exit_status == 0
    assert "grace" in str(whoami.stdout)

    # The same with OpenSSH's client; no command at all shows the help, the dashboard hint too.
    identity = write_private_key(key, tmp_path / "id_ed25519")
    process = await _run(*ssh_client_command(ssh_server.port, "grace", identity), "frobnicate")
    assert process[0] == 2
    assert "usage: ssh panel" in process[2]
    process = await _run(*ssh_client_command(ssh_server.port, "grace", identity), "whoami")
    assert process[0] == 0
    assert "grace" in process[1]


async def _run(*command: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
