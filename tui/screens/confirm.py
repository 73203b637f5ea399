"""A yes/no question in a dialog: dismisses with True (confirmed) or False."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Button, Static

from tui.screens.base import GhstModal
from tui.widgets.form import dialog_actions


class ConfirmDialog(GhstModal[bool]):
    CSS_PATH = "confirm.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm"),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    def __init__(
        self,
        title: str,
        message: str,
        *,
        confirm_label: str = "Confirm",
        danger: bool = False,
    ) -> None:
        super().__init__()
        self.question_title = title
        self.message = message
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self.danger else ""):
            yield Static(self.question_title, id="dialog-title", markup=False)
            yield Static(self.message, id="dialog-message", markup=False)
            yield dialog_actions(
                [("y", "yes"), ("n", "no")],
                Button("Cancel", id="cancel"),
                Button(
                    Content(self.confirm_label),
                    id="confirm",
                    variant="error" if self.danger else "primary",
                ),
                gap="  ",
            )

    def on_mount(self) -> None:
        # A destructive answer is never one Enter away.
        self.query_one("#cancel" if self.danger else "#confirm", Button).focus()

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
