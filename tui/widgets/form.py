"""Form pieces shared by the sign-up, log-in, password and add-key forms, and the dialogs' row
of key hints and buttons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Label, Static


class ErrorLine(Static):
    """An error the user can fix, shown under a form; hidden while there is none."""

    DEFAULT_CSS = """
    ErrorLine {
        display: none;
        width: 100%;
        margin: 1 0 0 0;
        padding: 0 1;
        color: $text-error;
        background: $error-muted;
    }
    ErrorLine.-shown {
        display: block;
    }
    """

    def __init__(self, *, id: str = "error") -> None:
        super().__init__("", id=id, markup=False)
        self.message = ""

    def set_message(self, message: str) -> None:
        self.message = message
        self.update(message)
        self.set_class(bool(message), "-shown")

    def clear(self) -> None:
        self.set_message("")


class Field(Horizontal):
    """A label on the left, the input (and an optional hint under it) on the right."""

    DEFAULT_CSS = """
    Field {
        height: auto;
        width: 100%;
        margin-bottom: 1;

        & > .field-label {
            width: 17;
            padding: 0 1 0 0;
            color: $text-muted;
        }
        &:focus-within > .field-label {
            color: $text-accent;
            text-style: bold;
        }
        & > .field-body {
            width: 1fr;
            height: auto;
        }
        .field-hint {
            color: $text-muted;
            padding: 0 1;
        }
        Input {
            height: 1;
            border: none;
            padding: 0 1;
            background: $boost;
        }
        Input:focus {
            border: none;
            background: $primary 20%;
        }
        Input.-invalid {
            border: none;
            background: $error 20%;
        }
    }
    """

    def __init__(self, label: str, widget: Widget, hint: str | None = None) -> None:
        super().__init__()
        self.label = label
        self.widget = widget
        self.hint = hint

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="field-label")
        with Vertical(classes="field-body"):
            yield self.widget
            if self.hint:
                yield Static(self.hint, classes="field-hint", markup=False)


class FormCheckbox(Checkbox, inherit_bindings=False):
    """A checkbox inside a form: space toggles it, Enter is left to submit the form."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_button", "Toggle", show=False),
    ]


def dialog_actions(
    keys: Sequence[tuple[str, str]], *buttons: Button, gap: str = "   "
) -> Horizontal:
    """A dialog's bottom row: its keys as hints (`enter create   esc cancel`), then its buttons.
    Each dialog's stylesheet lays out `#dialog-actions` and `#dialog-keys`."""
    parts: list[tuple[str, str] | str] = []
    for index, (key, what) in enumerate(keys):
        parts += [(key, "bold $text-accent"), f" {what}{gap if index < len(keys) - 1 else ''}"]
    hints = Static(Content.assemble(*parts), id="dialog-keys")
    return Horizontal(hints, *buttons, id="dialog-actions")
