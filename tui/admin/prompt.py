"""A dialog that asks an admin for a few values (a role, an amount and a reason, a plan, a
project's name to confirm its deletion). Dismisses with the values as typed, or None."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, Static

from tui.screens.base import GhstModal
from tui.widgets.form import Field


class PromptDialog(GhstModal[list[str] | None]):
    CSS_PATH = "prompt.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        message: str,
        fields: Sequence[tuple[str, str]],
        *,
        confirm_label: str = "Apply",
        danger: bool = False,
    ) -> None:
        """`fields`: (label, placeholder) of each value asked for."""
        super().__init__()
        self.prompt_title = title
        self.message = message
        self.fields = list(fields)
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self.danger else ""):
            yield Static(self.prompt_title, id="dialog-title", markup=False)
            yield Static(self.message, classes="dialog-hint", markup=False)
            for index, (label, placeholder) in enumerate(self.fields):
                yield Field(label, Input(id=f"value-{index}", placeholder=placeholder))
            with Horizontal(id="dialog-actions"):
                yield Static(
                    Content.assemble(
                        ("enter", "bold $text-accent"), " apply   ", ("esc", "bold $text-accent"),
                        " cancel",
                    ),
                    id="dialog-keys",
                )  # fmt: skip
                yield Button("Cancel", id="cancel")
                yield Button(
                    self.confirm_label, id="apply", variant="error" if self.danger else "primary"
                )

    def on_mount(self) -> None:
        self.query_one("#value-0", Input).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def next_field(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        position = inputs.index(event.input)
        if position + 1 < len(inputs):
            inputs[position + 1].focus()
        else:
            self.apply()

    @on(Button.Pressed, "#apply")
    def apply(self) -> None:
        self.dismiss([field.value for field in self.query(Input)])
