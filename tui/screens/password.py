"""Change password: the current one, then the new one twice."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from core.errors import AuthenticationError, ValidationError
from core.identity.accounts import validate_password
from tui.formatting import plural
from tui.onboarding import PASSWORD_RULE
from tui.screens.base import GhstScreen
from tui.widgets.form import ErrorLine, Field, FormCheckbox
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar


class PasswordScreen(GhstScreen[None]):
    TITLE = "Change password"
    CSS_PATH = "password.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Change password")
        with VerticalScroll(classes="page", can_focus=False), Vertical(classes="card"):
            yield Static("Change password", id="title", classes="card-title")
            yield Static(
                "Enter your current password, then the new one twice.",
                classes="card-subtitle",
            )
            yield Field("Current password", Input(id="current", password=True, max_length=1024))
            yield Field(
                "New password",
                Input(id="new", password=True, max_length=1024),
                hint=PASSWORD_RULE,
            )
            yield Field("Confirm new", Input(id="confirm", password=True, max_length=1024))
            # Checked by default: a changed password usually means the old one may be known.
            yield FormCheckbox("Log out my other sessions", value=True, id="logout-others")
            yield ErrorLine()
            with Horizontal(classes="actions"):
                yield Button("Change password", id="change", variant="primary")
                yield Button("Cancel", id="cancel")
        yield KeyBar()

    @on(Button.Pressed, "#cancel")
    def action_back(self) -> None:
        if not self._busy:
            self.dismiss()

    @on(Input.Submitted)
    @on(Button.Pressed, "#change")
    def action_submit(self) -> None:
        if self._busy:
            return
        error = self.query_one(ErrorLine)
        current = self.query_one("#current", Input)
        new = self.query_one("#new", Input)
        confirm = self.query_one("#confirm", Input)
        if not current.value:
            error.set_message("Enter your current password.")
            current.focus()
            return
        try:
            validate_password(new.value)
        except ValidationError as invalid:
            error.set_message(invalid.message)
            new.focus()
            return
        if new.value != confirm.value:
            error.set_message("The new passwords do not match.")
            confirm.focus()
            return
        error.clear()
        self._set_busy(True)
        logout_others = self.query_one("#logout-others", FormCheckbox).value
        self.change_password(current.value, new.value, logout_others)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#change", Button)
        button.disabled = busy
        button.label = "Changing…" if busy else "Change password"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def change_password(self, current: str, new: str, logout_others: bool) -> None:
        visitor = self.visitor
        try:
            current_session = visitor.session.jti if visitor.session is not None else None
            # Sessions logged in with the old password end in any case.
            closed = await self.panel.accounts.change_password(
                self.actor, current, new, visitor.remote_addr, keep_session=current_session
            )
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        message = "Use the new one next time you log in."
        if logout_others and current_session is not None:
            closed += await self.panel.sessions.revoke_others(self.actor, current_session)
        if closed:
            message += f" {plural(closed, 'other session')} logged out."
        self.notify(message, title="Password changed")
        self.dismiss()

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, AuthenticationError):
            self.query_one(ErrorLine).set_message(error.message)
            current = self.query_one("#current", Input)
            current.value = ""
            current.focus()
        elif isinstance(error, ValidationError):
            self.query_one(ErrorLine).set_message(error.message)
        else:
            super().handle_error(error)
