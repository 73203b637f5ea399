"""The audit log: what the user did and what was done to their data, newest first.

Pages go back in time by id (keyset), `n` older and `p` newer. On the first page new entries
appear as they are written (an `audit` event); an older page stays as it is while read.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from core.audit.entries import AuditEvent
from core.events import Subscription
from tui.formatting import moment
from tui.screens.base import GhstScreen
from tui.watch import Changed, watch
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.width_columns import ColumnsByWidth

PAGE = 50
WATCHED = ("audit",)
COLUMNS = (
    ("When (UTC)", "when"),
    ("Action", "action"),
    ("Target", "target"),
    ("Outcome", "outcome"),
    ("By", "by"),
    ("From", "from"),
)
# Below WIDE_FROM columns each entry takes two lines: who and where under what and when.
NARROW_COLUMNS = (
    ("When / outcome", "when"),
    ("Action · target / by, from", "what"),
)
OUTCOME_STYLES = {"ok": "green", "refused": "bold red", "failed": "yellow"}


def target_text(event: AuditEvent) -> str:
    name = event.target_name or ""
    detail = event.metadata.get("name") or event.metadata.get("archive")
    if isinstance(detail, str) and detail:
        return f"{name} {detail}".strip()
    return name


def origin_text(event: AuditEvent) -> str:
    where = event.source_address or ""
    return f"{event.origin} {where}".strip()


def audit_cells(event: AuditEvent, narrow: bool) -> tuple[Text, ...]:
    outcome = Text(event.outcome, OUTCOME_STYLES.get(event.outcome, ""))
    if narrow:
        return (
            Text.assemble(moment(event.at), "\n", outcome),
            Text.assemble(
                (event.action, "bold"),
                (f" · {target_text(event)}" if target_text(event) else "", ""),
                "\n",
                (f"{event.actor_label}, {origin_text(event)}", "dim"),
            ),
        )
    return (
        Text(moment(event.at)),
        Text(event.action, "bold"),
        Text(target_text(event)),
        outcome,
        Text(event.actor_label),
        Text(origin_text(event), "dim"),
    )


class AuditScreen(GhstScreen[None]):
    TITLE = "Audit log"
    CSS_PATH = "audit.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "older", "Older"),
        Binding("p", "newer", "Newer"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[AuditEvent] = []
        # The id each page shown so far started below (None: the newest); the last is shown.
        self.pages: list[int | None] = [None]
        self.has_older = False
        self.columns = ColumnsByWidth(COLUMNS, NARROW_COLUMNS)
        self._events: Subscription | None = None

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Audit log")
        with Vertical(id="audit-page"):
            yield Static("Audit log", id="title", classes="card-title")
            yield Static(
                "What you did, and what was done to your account and projects, newest first.",
                classes="muted",
            )
            with Vertical(id="audit-box"):
                yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
                yield Static("Loading your audit log…", id="empty")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#audit-box").border_title = "Entries"
        self._events = watch(self, WATCHED)

    def on_screen_resume(self) -> None:
        # On first show, and on coming back to the newest page (events that came while covered
        # were not loaded).
        if self.pages[-1] is None or not self.entries:
            self.load_page()

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()

    def on_changed(self, message: Changed) -> None:
        # New entries go on the first page; a page of older ones stays put while read.
        if self.is_active and self.pages[-1] is None:
            self.load_page()

    def on_resize(self, event: events.Resize) -> None:
        if self.columns.resized(event.size.width):
            self.show_entries(self.entries, self.has_older)

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_page(self) -> None:
        found = await self.panel.audit.list(self.actor, before_id=self.pages[-1], limit=PAGE + 1)
        self.show_entries(found[:PAGE], len(found) > PAGE)

    def show_entries(self, entries: list[AuditEvent], has_older: bool) -> None:
        self.entries, self.has_older = entries, has_older
        table = self.query_one("#audit", DataTable)
        self.columns.apply(table, self.app.size.width)
        narrow = bool(self.columns.narrow)
        for event in entries:
            table.add_row(*audit_cells(event, narrow), key=str(event.id), height=2 if narrow else 1)
        page = len(self.pages)
        self.query_one("#audit-box").border_title = (
            f"Entries · page {page}" if page > 1 or has_older else "Entries"
        )
        empty = self.query_one("#empty", Static)
        empty.update("Nothing recorded yet." if page == 1 else "No older entries.")
        empty.display = not entries
        table.display = bool(entries)
        if entries:
            table.focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "older" and not self.has_older:
            return None
        if action == "newer" and len(self.pages) == 1:
            return None
        return True

    def action_older(self) -> None:
        if self.has_older and self.entries:
            self.pages.append(self.entries[-1].id)
            self.load_page()

    def action_newer(self) -> None:
        if len(self.pages) > 1:
            self.pages.pop()
            self.load_page()

    def action_back(self) -> None:
        self.dismiss()
