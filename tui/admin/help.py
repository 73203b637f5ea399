"""`?` on an admin view: every key of the view, with what it does (esc closes)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from tui.screens.base import GhstModal

GENERAL = (
    (":", "jump to a view: users projects deploys plans billing audit system"),
    ("/", "filter (esc clears it)"),
    ("space", "mark a row; actions apply to the marked rows"),
    ("ctrl+f ctrl+b", "next and previous page"),
    ("p", "pause or resume live updates"),
    ("esc", "close the prompt, clear the filter and marks, then back"),
)


def view_keys(screen: Any) -> list[tuple[str, str]]:
    """(key, description) of the bindings the view itself adds."""
    keys: list[tuple[str, str]] = [("enter", screen.OPENS)] if screen.OPENS else []
    for binding in type(screen).__dict__.get("BINDINGS", []):
        if isinstance(binding, Binding):
            keys.append((binding.key.replace("_", " "), binding.description))
    return keys


class AdminHelp(GhstModal[None]):
    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, view: Any) -> None:
        super().__init__()
        self.view_name = str(view.VIEW)
        self.keys = view_keys(view)

    def compose(self) -> ComposeResult:
        lines = [Content.assemble((f"{key:>14}", "bold $text-accent"), f"  {what}")
                 for key, what in (*self.keys, *GENERAL)]  # fmt: skip
        with Vertical(id="dialog"):
            yield Static(f"Keys of :{self.view_name}", id="dialog-title", markup=False)
            yield Static(Content("\n").join(lines), id="keys")

    def action_close(self) -> None:
        self.dismiss(None)
