"""SSH keys: the account's keys in a table; add one (a dialog) or remove the selected one."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from core.identity.keys import SSHKey
from tui.formatting import day, key_type
from tui.screens.add_key import AddKeyDialog
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.width_columns import ColumnsByWidth

# Each key takes two lines, its type under its name, so that the whole SHA256 fingerprint and
# both dates fit in 100 columns.
COLUMNS = (
    ("Name · type", "name"),
    ("Fingerprint", "fingerprint"),
    ("Added", "added"),
    ("Last used", "last-used"),
)
# Below WIDE_FROM columns the fingerprint goes under the name and "last used" under "added",
# so that the whole fingerprint still fits in 80 columns.
NARROW_COLUMNS = (
    ("Name · type / fingerprint", "key"),
    ("Added / last used", "dates"),
)


def used_text(key: SSHKey) -> str:
    return "never used" if key.last_used_at is None else f"used {day(key.last_used_at)}"


def kind_text(key: SSHKey) -> str:
    """The key's type, and a deploy key's limits (e.g. "ed25519 · deploy key: deploy, read · shop")."""
    kind = key_type(key.algorithm)
    if key.scopes is None:
        return kind
    projects = "all projects" if key.projects is None else ", ".join(sorted(key.projects))
    return f"{kind} · deploy key: {', '.join(sorted(key.scopes))} · {projects}"


def key_cells(key: SSHKey, narrow: bool) -> tuple[Text, ...]:
    if narrow:
        return (
            Text.assemble(
                (key.name, "bold"), (f" · {kind_text(key)}", "dim"), "\n", key.fingerprint
            ),
            Text.assemble(day(key.created_at), "\n", (used_text(key), "dim")),
        )
    return (
        Text.assemble((key.name, "bold"), "\n", (kind_text(key), "dim")),
        Text(key.fingerprint),
        Text(day(key.created_at)),
        Text(day(key.last_used_at)),
    )


class KeysScreen(GhstScreen[None]):
    TITLE = "SSH keys"
    CSS_PATH = "keys.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add key"),
        Binding("d,delete", "remove", "Remove key"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[SSHKey] = []
        self.columns = ColumnsByWidth(COLUMNS, NARROW_COLUMNS)
        self._shown = False  # whether the keys were loaded and shown

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "SSH keys")
        with Vertical(id="keys-page"):
            yield Static("SSH keys", id="title", classes="card-title")
            yield Static(
                "ssh logs you in with any of these keys, no password asked.",
                classes="muted",
            )
            with Vertical(id="keys-box"):
                yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
                yield Static("Loading your keys…", id="empty")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#keys-box").border_title = "Keys"
        self.load_keys()

    def on_resize(self, event: events.Resize) -> None:
        if not self.columns.resized(event.size.width):
            return
        if self._shown:
            self.show_keys(self.keys)
        else:  # still loading: only the columns
            self.set_columns(self.query_one("#keys", DataTable))

    def set_columns(self, table: DataTable[Text]) -> None:
        """The columns for the screen's width (the table is cleared)."""
        self.columns.apply(table, self.app.size.width)

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_keys(self, select: int | None = None) -> None:
        self.show_keys(await self.panel.keys.list(self.actor), select)

    def show_keys(self, keys: list[SSHKey], select: int | None = None) -> None:
        self.keys = keys
        self._shown = True
        table = self.query_one("#keys", DataTable)
        previous = self.selected_key()
        self.set_columns(table)
        for key in keys:
            table.add_row(*key_cells(key, bool(self.columns.narrow)), key=str(key.id), height=2)
        self.query_one("#keys-box").border_title = f"Keys · {len(keys)}"
        empty = self.query_one("#empty", Static)
        empty.update(
            "No SSH keys yet. Press a to add your public key (e.g. ~/.ssh/id_ed25519.pub)."
        )
        empty.display = not keys
        table.display = bool(keys)
        wanted = select if select is not None else (previous.id if previous else None)
        for row, key in enumerate(keys):
            if key.id == wanted:
                table.move_cursor(row=row)
        if keys:
            table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.refresh_bindings()

    def selected_key(self) -> SSHKey | None:
        table = self.query_one("#keys", DataTable)
        if not self.keys or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.keys[row] if 0 <= row < len(self.keys) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "remove" and not self.keys:
            return None  # shown dimmed in the footer: there is nothing to remove
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_add(self) -> None:
        self.app.push_screen(AddKeyDialog(), self._key_added)

    def _key_added(self, key: SSHKey | None) -> None:
        if key is not None:
            self.notify(f"{key.name} ({key.fingerprint})", title="Key added")
            self.load_keys(select=key.id)

    def action_remove(self) -> None:
        key = self.selected_key()
        if key is None:
            self.notify("There is no key to remove.", severity="warning")
            return
        message = f"{key.name}\n{key.fingerprint}\n\nssh will no longer log you in with it."
        if len(self.keys) == 1:
            message += (
                "\n\nThis is your last SSH key: after removing it you can only log in with "
                "your password."
            )
        self.app.push_screen(
            ConfirmDialog(
                f"Remove the key {key.name}?",
                message,
                confirm_label="Remove key",
                danger=True,
            ),
            lambda confirmed: self._remove_answered(key, confirmed),
        )

    def _remove_answered(self, key: SSHKey, confirmed: bool | None) -> None:
        if confirmed:
            self.remove_key(key)

    @work(exclusive=True, exit_on_error=False, group="remove")
    async def remove_key(self, key: SSHKey) -> None:
        await self.panel.keys.remove(self.actor, key.id)
        self.notify(f"{key.name} ({key.fingerprint})", title="Key removed")
        keys = await self.panel.keys.list(self.actor)
        self.show_keys(keys)
        if not keys:
            self.notify(
                "That was your last SSH key: log in with your password next time.",
                severity="warning",
            )
