"""The new-token dialog (a name, scopes, projects, a lifetime) and the dialog that shows the new
token's secret, once: it is stored only as a hash and cannot be shown again.

`NewTokenDialog` dismisses with the `CreatedToken`, or None when cancelled. What core refuses (an
unknown scope, a lifetime over a year, a project that is not the account's, a name in use) is
explained inside the dialog, which stays open with everything typed still there.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Input, Static

from core.actor import SCOPES
from core.errors import ConflictError, NotFoundError, ValidationError
from core.identity.access_tokens import CreatedToken, parse_lifetime, parse_scopes
from tui.formatting import day
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions

DEFAULT_SCOPES = "read,deploy"
DEFAULT_LIFETIME = "90d"
COPY_IT_NOW = "Copy it now: ghst keeps only a hash and will never show this token again."


def project_names(text: str) -> list[str] | None:
    """`shop, blog` as names; empty means every project."""
    names = [name for name in re.split(r"[\s,]+", text.strip()) if name]
    return names or None


class NewTokenDialog(GhstModal[CreatedToken | None]):
    CSS_PATH = "new_token.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Create token"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("New access token", id="dialog-title")
            yield Static(
                "For ssh commands and file transfers from scripts and CI: "
                "ssh you@panel with the token as the password.",
                classes="dialog-hint",
                markup=False,
            )
            yield Field("Name", Input(id="name", placeholder="e.g. github-actions", max_length=64))
            yield Field(
                "Scopes",
                Input(DEFAULT_SCOPES, id="scopes"),
                hint=f"Any of {', '.join(sorted(SCOPES))}.",
            )
            yield Field(
                "Projects",
                Input(id="projects", placeholder="all projects"),
                hint="Names separated by commas; empty for every project.",
            )
            yield Field(
                "Expires in",
                Input(DEFAULT_LIFETIME, id="lifetime"),
                hint="Days (90d), weeks (2w) or hours (12h); at most 365 days.",
            )
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "create"), ("esc", "cancel")],
                Button("Cancel", id="cancel"),
                Button("Create token", id="create", variant="primary"),
            )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def action_submit(self) -> None:
        if self._busy:
            return
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.query_one(ErrorLine).set_message("Give the token a name, e.g. github-actions.")
            self.query_one("#name").focus()
            return
        try:
            scopes = parse_scopes(self.query_one("#scopes", Input).value)
            lifetime = parse_lifetime(self.query_one("#lifetime", Input).value)
        except ValidationError as error:
            self.query_one(ErrorLine).set_message(error.message)
            return
        projects = project_names(self.query_one("#projects", Input).value)
        self._set_busy(True)
        self.create_token(name, scopes, projects, lifetime)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#create", Button)
        button.disabled = busy
        button.label = "Creating…" if busy else "Create token"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def create_token(
        self, name: str, scopes: frozenset[str], projects: list[str] | None, lifetime: timedelta
    ) -> None:
        try:
            created = await self.panel.access_tokens.create(
                self.actor, name, scopes, projects=projects, lifetime=lifetime
            )
        except Exception:
            self._set_busy(False)
            raise
        self.dismiss(created)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError | ConflictError | NotFoundError):
            self.query_one(ErrorLine).set_message(error.message)
        else:
            super().handle_error(error)


class TokenSecretDialog(GhstModal[None]):
    """The new token's secret, shown this once, with what to do with it."""

    CSS_PATH = "new_token.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "done", "Done"),
        Binding("c", "copy", "Copy"),
    ]

    def __init__(self, created: CreatedToken) -> None:
        super().__init__()
        self.created = created

    def compose(self) -> ComposeResult:
        token = self.created.token
        with Vertical(id="dialog"):
            yield Static(f"Token {token.name} created", id="dialog-title", markup=False)
            yield Static(COPY_IT_NOW, id="copy-now", markup=False)
            yield Static(self.created.secret, id="secret", markup=False)
            yield Static(
                f"Expires {day(token.expires_at)}. Use it as the ssh password, e.g. "
                f"SSH_ASKPASS in CI; revoke it here when it leaks.",
                classes="dialog-hint",
                markup=False,
            )
            yield dialog_actions(
                [("c", "copy (OSC 52)"), ("enter", "done")],
                Button("Done", id="done", variant="primary"),
            )

    def on_mount(self) -> None:
        self.query_one("#done", Button).focus()

    @on(Button.Pressed, "#done")
    def action_done(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        # The terminal's clipboard, through the OSC 52 escape (not every terminal allows it).
        self.app.copy_to_clipboard(self.created.secret)
        self.notify("Sent to your terminal's clipboard (if it accepts OSC 52).", title="Copied")
