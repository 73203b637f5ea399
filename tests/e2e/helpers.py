"""Shared by the SSH end-to-end and integration tests: a running server, users, keys, typing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh

from core.identity.accounts import User
from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.e2e.terminal import AsyncsshTerminal, OpenSSHTerminal

PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def running_server(panel: Panel) -> AsyncIterator[GhstServer]:
    """The panel's SSH server on 127.0.0.1, on a free port (`server.port`)."""
    server = GhstServer.for_panel(panel, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.close(grace=0)


async def create_user(panel: Panel, username: str, password: str = PASSWORD) -> User:
    return await panel.accounts.sign_up(username, f"{username}@example.com", password)


def new_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def public_line(key: asyncssh.SSHKey, comment: str = "test") -> str:
    return bytes(key.export_public_key("openssh")).decode().strip() + f" {comment}"


async def add_key(panel: Panel, user: User, key: asyncssh.SSHKey, name: str = "test") -> None:
    await panel.keys.add(acting(user.id), public_line(key), name)


def write_private_key(key: asyncssh.SSHKey, path: Path) -> Path:
    """An OpenSSH private key file the `ssh` client accepts (mode 0600)."""
    path.write_bytes(bytes(key.export_private_key("openssh")))
    path.chmod(0o600)
    return path


async def sign_up_on_screen(
    terminal: AsyncsshTerminal | OpenSSHTerminal, username: str, password: str = PASSWORD
) -> None:
    """Fill the sign-up form (username prefilled from the SSH login name) and submit it.

    Step by step, checking the screen after each field (a burst of keys is tested on its own).
    """
    await terminal.wait_for("Create account")
    await terminal.wait_for(username)
    email = f"{username}@example.com"
    await terminal.wait_focus("Email")
    terminal.send(email)
    await terminal.wait_for(email)
    terminal.send("\t")
    await terminal.wait_focus("Password")
    terminal.send(password)
    await terminal.wait_for("•" * len(password))
    terminal.send("\t")
    await terminal.wait_focus("Confirm password")
    terminal.send(password)
    await terminal.wait_until(
        lambda: terminal.text().count("•" * len(password)) >= 2, "both passwords typed"
    )
    terminal.send("\r")
    await terminal.wait_for(f"Signed in as {username}")
