"""The app port dialog: the port the app listens on inside its container, or empty for automatic.

Dismisses with the `Project` as saved, or None when cancelled. A port core refuses is explained
inside the dialog, which stays open with what was typed. The deployer reads the setting when it
next creates containers: at the next deploy or restart, as the dialog says.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Button, Input, Static

from core.errors import ValidationError
from core.projects.service import Project, parse_app_port
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions

AUTOMATIC = "automatic (the image's EXPOSE, else 8080)"


def app_port_text(port: int | None) -> str:
    return str(port) if port is not None else AUTOMATIC


class AppPortDialog(GhstModal[Project | None]):
    CSS_PATH = "app_port.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, project: str, port: int | None) -> None:
        super().__init__()
        self.project_name = project
        self.port = port
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("App port", id="dialog-title")
            yield Static(
                f"The port {self.project_name}'s app listens on inside its container; the panel "
                "sets PORT to it and sends visitors there. Applied at the next deploy or restart.",
                classes="dialog-hint",
                markup=False,
            )
            yield Field(
                "Port",
                Input(
                    "" if self.port is None else str(self.port),
                    id="port",
                    placeholder="empty: automatic",
                    max_length=5,
                ),
                hint="1 to 65535. Empty: the port the image EXPOSEs, else 8080.",
            )
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "save"), ("esc", "cancel")],
                Button("Cancel", id="cancel"),
                Button("Save", id="save", variant="primary"),
            )

    def on_mount(self) -> None:
        self.query_one("#port", Input).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted, "#port")
    @on(Button.Pressed, "#save")
    def action_submit(self) -> None:
        if self._busy:
            return
        try:
            port = parse_app_port(self.query_one("#port", Input).value)
        except ValidationError as error:
            self.handle_error(error)
            return
        self._set_busy(True)
        self.save_port(port)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#save", Button)
        button.disabled = busy
        button.label = "Saving…" if busy else "Save"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def save_port(self, port: int | None) -> None:
        try:
            project = await self.panel.projects.set_app_port(self.actor, self.project_name, port)
        except Exception:  # (a cancelled worker means the dialog is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(project)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError):
            self.query_one(ErrorLine).set_message(error.message)
            self.query_one("#port", Input).focus()
        else:
            super().handle_error(error)
