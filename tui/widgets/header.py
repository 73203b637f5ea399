"""The bar at the top of every screen: product name, where you are, who you are."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from tui.screens.base import ghst_app

SEPARATOR = " \u203a "  # a single right-pointing angle quotation mark


class AppHeader(Horizontal):
    DEFAULT_CSS = """
    AppHeader {
        dock: top;
        height: 1;
        width: 100%;
        background: $panel;
        color: $foreground;

        #brand {
            width: auto;
            padding: 0 1;
            background: $primary;
            color: $text;
            text-style: bold;
        }
        #where {
            width: 1fr;
            padding: 0 2;
            color: $text-muted;
            /* One line: a long path ends in "…" rather than losing its second line. */
            text-wrap: nowrap;
            text-overflow: ellipsis;
        }
        #viewing {
            width: auto;
            padding: 0 1;
            background: $error;
            color: $text;
            text-style: bold;
        }
        #who {
            width: auto;
            padding: 0 1;
            color: $text-muted;
        }
        #who.-signed-in {
            color: $text-success;
            text-style: bold;
        }
    }
    """

    def __init__(self, *where: str) -> None:
        """`where`: the path to this screen, e.g. ("Home", "SSH keys")."""
        super().__init__()
        self.where = SEPARATOR.join(where)

    def compose(self) -> ComposeResult:
        visitor = ghst_app(self).visitor
        if visitor.viewing is not None and visitor.user is not None:
            # On every screen of a viewed dashboard: whose it is, and that nothing changes.
            yield Static(
                f"VIEWING AS {visitor.user.username} · READ-ONLY", id="viewing", markup=False
            )
        else:
            yield Static("◆ ghst", id="brand")
        yield Static(self.where, id="where", markup=False)
        if visitor.user is not None:
            yield Static(f"● {visitor.user.username}", id="who", classes="-signed-in", markup=False)
        elif visitor.operator is not None:  # `ghst admin` on the host
            yield Static(
                f"● {visitor.operator.label}", id="who", classes="-signed-in", markup=False
            )
        else:
            yield Static("not signed in", id="who")
