"""The add-key dialog: paste an OpenSSH public key line, optionally name it.

Dismisses with the new `SSHKey`, or None when cancelled. A key core refuses (not a key, a
private key, a key another account has) is explained inside the dialog, which stays open with
everything typed still there.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static, TextArea

from core.errors import ConflictError, ValidationError
from core.identity.keys import SSHKey
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions

KEY_PLACEHOLDER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… you@laptop"


class KeyLineArea(TextArea):
    """A text area for one long key line: wraps it for reading; Enter submits, never a newline."""

    class Submitted(Message):
        pass

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted())
            return
        await super()._on_key(event)


class AddKeyDialog(GhstModal[SSHKey | None]):
    CSS_PATH = "add_key.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Add key"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Add an SSH key", id="dialog-title")
            yield Static(
                "Paste one line of your .pub file, e.g. ~/.ssh/id_ed25519.pub. "
                "Never the private key.",
                classes="dialog-hint",
                markup=False,
            )
            yield Field(
                "Public key",
                KeyLineArea(
                    id="key",
                    soft_wrap=True,
                    show_line_numbers=False,
                    tab_behavior="focus",
                    placeholder=KEY_PLACEHOLDER,
                ),
            )
            yield Field(
                "Name",
                Input(id="name", placeholder="e.g. laptop", max_length=64),
                hint="Optional: the key's comment when left empty.",
            )
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "add"), ("esc", "cancel"), ("tab", "next field")],
                Button("Cancel", id="cancel"),
                Button("Add key", id="add", variant="primary"),
            )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(KeyLineArea.Submitted)
    @on(Input.Submitted, "#name")
    @on(Button.Pressed, "#add")
    def action_submit(self) -> None:
        if self._busy:
            return
        line = self.query_one("#key", KeyLineArea).text
        if not line.strip():
            self.query_one(ErrorLine).set_message(
                "Paste a public key line, e.g. the contents of ~/.ssh/id_ed25519.pub."
            )
            self.query_one("#key").focus()
            return
        name = self.query_one("#name", Input).value.strip() or None
        self._set_busy(True)
        self.add_key(line, name)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#add", Button)
        button.disabled = busy
        button.label = "Adding…" if busy else "Add key"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def add_key(self, line: str, name: str | None) -> None:
        try:
            key = await self.panel.keys.add(self.actor, line, name)
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(key)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError | ConflictError):
            self.query_one(ErrorLine).set_message(error.message)
        else:
            super().handle_error(error)
