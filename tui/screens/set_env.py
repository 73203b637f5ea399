"""The set-variable dialog: a name and a value (typed like a password), to add or change one.

Dismisses with the `EnvVar` set, or None when cancelled. A name or value core refuses is
explained inside the dialog, which stays open with what was typed.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Input, Static

from core.errors import ValidationError
from core.projects.env_vars import MAX_NAME_LENGTH, EnvVar
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions

NAME_RULES = (
    "Letters, digits and underscores, not starting with a digit. PORT and GHST_* are the panel's."
)


class SetEnvDialog(GhstModal[EnvVar | None]):
    CSS_PATH = "set_env.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+t", "toggle_value", "Show value", show=False),
    ]

    def __init__(self, project: str, name: str = "") -> None:
        """`name` given: change that variable (its value is typed again, never shown)."""
        super().__init__()
        self.project_name = project
        self.var_name = name
        self._busy = False

    def compose(self) -> ComposeResult:
        changing = bool(self.var_name)
        with Vertical(id="dialog"):
            yield Static(
                f"Change {self.var_name}" if changing else "Set a variable", id="dialog-title"
            )
            yield Static(
                f"For {self.project_name}'s containers. Applied at the next deploy or restart.",
                classes="dialog-hint",
                markup=False,
            )
            yield Field(
                "Name",
                Input(
                    self.var_name,
                    id="name",
                    placeholder="e.g. DATABASE_URL",
                    max_length=MAX_NAME_LENGTH,
                ),
                hint=NAME_RULES,
            )
            yield Field(
                "Value",
                Input(id="value", password=True, placeholder="typed like a password"),
                hint="ctrl+t shows or hides what you type. Up to 32 KiB.",
            )
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "set"), ("esc", "cancel")],
                Button("Cancel", id="cancel"),
                Button("Set", id="set", variant="primary"),
            )

    def on_mount(self) -> None:
        self.query_one("#value" if self.var_name else "#name", Input).focus()

    def action_toggle_value(self) -> None:
        value = self.query_one("#value", Input)
        value.password = not value.password

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted, "#name")
    def _name_submitted(self) -> None:
        self.query_one("#value", Input).focus()

    @on(Input.Submitted, "#value")
    @on(Button.Pressed, "#set")
    def action_submit(self) -> None:
        if self._busy:
            return
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.query_one(ErrorLine).set_message("Enter a name for the variable.")
            self.query_one("#name", Input).focus()
            return
        self._set_busy(True)
        self.set_variable(name, self.query_one("#value", Input).value)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#set", Button)
        button.disabled = busy
        button.label = "Setting…" if busy else "Set"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def set_variable(self, name: str, value: str) -> None:
        try:
            var = await self.panel.env.set(self.actor, self.project_name, name, value)
        except Exception:  # (a cancelled worker means the dialog is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(var)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError):
            self.query_one(ErrorLine).set_message(error.message)
            field = "#value" if error.message.startswith("A value") else "#name"
            self.query_one(field, Input).focus()
        else:
            super().handle_error(error)
