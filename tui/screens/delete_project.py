"""Delete a project: the user types its name to confirm, as nothing of it can be brought back.

Deletes through `DeploymentService.delete_project`: what runs (containers, images, network, vhost,
port) goes first, then the project and its versions in storage.
Dismisses with the deleted `Project`, or None when cancelled. A wrong name is said inside the
dialog (core checks it: one rule for every front end), which stays open.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Button, Input, Static

from core.errors import NotFoundError, ValidationError
from core.projects.service import Project
from tui.formatting import plural
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions


class DeleteProjectDialog(GhstModal[Project | None]):
    CSS_PATH = "delete_project.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project
        self._busy = False

    def compose(self) -> ComposeResult:
        project = self.project
        domain = self.panel.settings.domain
        with Vertical(id="dialog"):
            yield Static(
                Content.assemble("Delete the project ", (project.name, "bold"), "?"),
                id="dialog-title",
            )
            address = (f"http://{project.name}.{domain}", "bold")
            yield Static(
                Content.assemble(
                    "The project and its ",
                    (plural(project.versions, "version"), "bold"),
                    " are deleted from storage, and ",
                    address,
                    " stops answering. This cannot be undone.",
                )
                if project.versions
                else Content.assemble(
                    "The project is deleted, and ",
                    address,
                    " stops answering. This cannot be undone.",
                ),
                id="dialog-message",
            )
            yield Field(
                "Type its name",
                Input(id="confirmation", max_length=64),
                hint=f"Type {project.name} to confirm.",
            )
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "delete"), ("esc", "cancel")],
                Button("Cancel", id="cancel"),
                Button("Delete project", id="delete", variant="error"),
            )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted, "#confirmation")
    @on(Button.Pressed, "#delete")
    def action_submit(self) -> None:
        if self._busy:
            return
        self._set_busy(True)
        self.delete_project(self.query_one("#confirmation", Input).value)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#delete", Button)
        button.disabled = busy
        button.label = "Deleting…" if busy else "Delete project"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def delete_project(self, confirmation: str) -> None:
        try:
            project = await self.panel.deployments.delete_project(
                self.actor, self.project.name, confirmation
            )
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(project)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError):
            # The typed text stays, to fix a typo in it.
            self.query_one(ErrorLine).set_message(error.message)
            self.query_one("#confirmation", Input).focus()
            return
        super().handle_error(error)
        if isinstance(error, NotFoundError):  # deleted meanwhile, e.g. from another session
            self.dismiss(None)
