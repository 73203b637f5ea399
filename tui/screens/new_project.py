"""The new-project dialog: a name, with the rules it must follow and the address it becomes.

Dismisses with the new `Project`, or None when cancelled. A name core refuses (against the rules,
reserved, taken by anyone) is explained inside the dialog, which stays open with the name kept.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, Static

from core.errors import ConflictError, ValidationError
from core.projects.service import Project
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field

NAME_RULES = (
    "3 to 40 characters: lowercase letters, digits and hyphens, starting with a letter. "
    "Names are unique across the panel."
)


class NewProjectDialog(GhstModal[Project | None]):
    CSS_PATH = "new_project.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("New project", id="dialog-title")
            yield Static(
                "The name becomes the project's address and the folder you upload to.",
                classes="dialog-hint",
            )
            yield Field(
                "Name",
                Input(id="name", placeholder="e.g. my-shop", max_length=40),
                hint=NAME_RULES,
            )
            yield Static("", id="address")
            yield ErrorLine()
            with Horizontal(id="dialog-actions"):
                yield Static(
                    Content.assemble(
                        ("enter", "bold $text-accent"),
                        " create   ",
                        ("esc", "bold $text-accent"),
                        " cancel",
                    ),
                    id="dialog-keys",
                )
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self._show_address("")

    @on(Input.Changed, "#name")
    def _name_changed(self, event: Input.Changed) -> None:
        self._show_address(event.value.strip())

    def _show_address(self, name: str) -> None:
        domain = self.panel.settings.domain
        self.query_one("#address", Static).update(
            Content.assemble(
                # Lined up with the fields: a 17-column label, then the input's padding.
                "Address".ljust(18),
                (f"http://{name or '<name>'}.{domain}", "bold $foreground" if name else ""),
            )
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted, "#name")
    @on(Button.Pressed, "#create")
    def action_submit(self) -> None:
        if self._busy:
            return
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.query_one(ErrorLine).set_message("Enter a name for the project.")
            self.query_one("#name").focus()
            return
        self._set_busy(True)
        self.create_project(name)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#create", Button)
        button.disabled = busy
        button.label = "Creating…" if busy else "Create"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def create_project(self, name: str) -> None:
        try:
            project = await self.panel.projects.create(self.actor, name)
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(project)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError | ConflictError):
            self.query_one(ErrorLine).set_message(error.message)
            self.query_one("#name", Input).focus()
        else:
            super().handle_error(error)
