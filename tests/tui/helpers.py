"""Helpers for the dashboard tests: visitors, keys, and waiting for the app to settle.

Imported by the test modules; conftest.py only turns some of them into fixtures.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, Input

from core.panel import Panel
from tui.app import GhstApp
from tui.visitor import Visitor
from tui.widgets.form import ErrorLine

SIZE = (100, 30)
REMOTE_ADDR = "198.51.100.23"
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Note:
    message: str
    title: str
    severity: str


def record_notifications(app: GhstApp) -> list[Note]:
    """Every notification the app shows, in order (they still show on screen too)."""
    notes: list[Note] = []
    original = app.notify

    def notify(message: str, *, title: str = "", severity: Any = "information", **kw: Any) -> None:
        notes.append(Note(str(message), title, severity))
        original(message, title=title, severity=severity, **kw)

    app.notify = notify  # type: ignore[method-assign]
    return notes


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until no worker runs and the messages they caused are handled."""
    app = pilot.app
    for _ in range(50):
        await pilot.pause()
        if not any(worker.is_running for worker in app.workers):
            await pilot.pause()
            if not any(worker.is_running for worker in app.workers):
                return
        await app.workers.wait_for_complete()
    raise AssertionError("the app did not settle")


async def click(pilot: Pilot[Any], selector: str) -> None:
    """Click a widget as a user would, after any earlier press of it has finished.

    A Textual button ignores clicks while it still shows its last press (`-active`, 0.2 s):
    a test that clicks the same button twice in a row, faster than anyone could, would see its
    second click dropped on a fast machine.
    """
    widget = pilot.app.screen.query_one(selector)
    for _ in range(100):
        if not (isinstance(widget, Button) and widget.has_class("-active")):
            break
        await pilot.pause(0.02)
    await pilot.click(selector)


async def fill(pilot: Pilot[Any], **values: str) -> None:
    """Set inputs of the current screen by id (underscores stand for hyphens)."""
    for field, value in values.items():
        pilot.app.screen.query_one(f"#{field.replace('_', '-')}", Input).value = value
    await pilot.pause()


def error_text(pilot: Pilot[Any]) -> str:
    return pilot.app.screen.query_one(ErrorLine).message


def generate_key(directory: Path, comment: str = "test@ghst") -> str:
    """A fresh ed25519 public key line made with ssh-keygen."""
    path = directory / f"key-{len(list(directory.glob('key-*')))}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def guest(ssh_username: str = "alice", **kwargs: Any) -> Visitor:
    return Visitor(REMOTE_ADDR, ssh_username, **kwargs)


async def sign_up(panel: Panel, username: str = "alice", password: str = PASSWORD) -> Visitor:
    """An account with a session, as if it had just logged in."""
    user = await panel.accounts.sign_up(username, f"{username}@example.com", password)
    session = await panel.sessions.open(user.id, "password", REMOTE_ADDR)
    return Visitor(REMOTE_ADDR, username, user=user, session=session)
