"""The admin app's list screens: one table of rows paged and filtered by core (SQL), k9s's keys.

    :  jump to a view (:users :projects :plans :audit)     /  filter (typed into the prompt line)
    ?  help                                           esc  clear the filter, then back
    space  mark a row; actions apply to the marked rows, else to the row under the cursor
    ctrl+f / ctrl+b  next / previous page             p  pause live updates

A page is at most `PAGE_SIZE` rows: the screen keeps the key each page started after, so
paging back is one query too, and nothing ever loads a whole table. One load runs at a time:
a keystroke of the filter, a page turn or an event during a load makes it fetch once more when
its query is back, with the filter and page asked by then (rows already out of date are not
drawn), so typing fast never queues queries and the last key's rows come one query later.
Live updates come from the panel's events (ids only): while not paused, an event loads the
shown page again.

Every action runs in a worker as the visitor's staff actor; core refuses what the actor may
not do (an operator changes nothing), and the screen shows core's message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Static
from textual.worker import Worker

from core.actor import Actor
from core.errors import PermissionDenied
from core.events import Subscription
from tui.screens.base import GhstScreen
from tui.watch import Changed, Gathered
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.lines_table import LinesTable
from tui.widgets.prompt_input import PromptInput
from tui.widgets.redraw import update_static

Row = TypeVar("Row")
PAGE_SIZE = 50
# How long a filter keystroke's frame (the key shown in the prompt) waits for the rows it
# brings, so that both are drawn in one frame; a slower query shows the key first.
HOLD_FOR_ROWS = 0.05
MARK = "●"


def views() -> dict[str, Callable[[], GhstScreen[None]]]:
    """The views `:` jumps to, by name (imported here: the views import this module)."""
    from tui.admin.audit import AdminAuditScreen
    from tui.admin.billing import AdminBillingScreen
    from tui.admin.deploys import AdminDeploysScreen
    from tui.admin.plans import AdminPlansScreen
    from tui.admin.projects import AdminProjectsScreen
    from tui.admin.system import AdminSystemScreen
    from tui.admin.users import AdminUsersScreen

    return {
        "users": AdminUsersScreen,
        "projects": AdminProjectsScreen,
        "deploys": AdminDeploysScreen,
        "plans": AdminPlansScreen,
        "billing": AdminBillingScreen,
        "system": AdminSystemScreen,
        "audit": AdminAuditScreen,
    }


class AdminListScreen(GhstScreen[None], Generic[Row]):
    VIEW: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    # What enter on a row opens (for `?`); empty: enter does nothing on a row.
    OPENS: ClassVar[str] = ""
    # Event kinds that may change what the view shows.
    WATCHED: ClassVar[tuple[str, ...]] = ()
    # Keys of actions that change something: dimmed for operators (core refuses them anyway).
    CHANGES: ClassVar[frozenset[str]] = frozenset()
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: run as the app reads the key, so the prompt has the focus before the next
        # key of a burst (`:projects` and Enter in one packet) is handed to a widget.
        Binding(":", "jump", "Jump", priority=True),
        Binding("/", "filter", "Filter", priority=True),
        # Enter, read by the app too: in the prompt, the table has the focus back before the
        # next key (`/bob`, Enter, `b` in one packet blocks bob, not filters on "bobb");
        # on a row, the view's `open_row`. (A view's own "enter" binding would replace it.)
        Binding("enter", "enter", show=False, priority=True),
        Binding("space", "mark", "Mark", show=False),
        Binding("ctrl+f", "next_page", "Next page", show=False),
        Binding("ctrl+b", "previous_page", "Prev page", show=False),
        Binding("p", "pause", "Pause"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "back", "Back"),
    ]
    KEY_BAR_DROP_ORDER: ClassVar[tuple[str, ...]] = ("pause", "jump", "filter")

    def __init__(self, search: str = "") -> None:
        super().__init__()
        self.search = search
        self.rows: list[Row] = []
        self.marked: set[str] = set()
        self.paused = False
        # The key each page starts after (None: the first page); the last one is shown.
        self._starts: list[str | None] = [None]
        self._prompt_mode: str | None = None  # ":" or "/" while the prompt line is open
        self._events: Subscription | None = None
        self._loader: Worker[None] | None = None
        self._stale = False
        self._hold_until = 0.0  # (time.monotonic) no frame is drawn before, unless rows come

    # --- what a view defines ---------------------------------------------------------------

    async def fetch(self, search: str, after: str | None, limit: int) -> list[Row]:
        raise NotImplementedError

    def key_of(self, row: Row) -> str:
        raise NotImplementedError

    def open_row(self) -> None:
        """Enter on a row (views with `OPENS`)."""

    def cells(self, row: Row) -> Sequence[str | Text]:
        raise NotImplementedError

    # --- the screen --------------------------------------------------------------------------

    @property
    def staff(self) -> Actor:
        return self.visitor.staff_actor

    def compose(self) -> ComposeResult:
        yield AppHeader("Admin", self.VIEW.capitalize())
        with Vertical(id="admin-page"):
            yield Static("", id="status", markup=False)
            yield LinesTable(id="rows")
            yield PromptInput(id="prompt", classes="-hidden")
        yield KeyBar()

    def on_mount(self) -> None:
        try:
            self.staff.require_staff()
        except PermissionDenied as error:  # only reachable for staff; refused all the same
            self.ghst.show_error(error)
            self.app.pop_screen()
            return
        self.query_one("#rows", LinesTable).set_columns(["", *self.COLUMNS])
        # Called as the value changes, before the prompt asks to be redrawn: its frame waits.
        self.watch(self.query_one("#prompt", PromptInput), "value", self._typed, init=False)
        if self.WATCHED:
            gathered = Gathered(self)
            # Events carry ids only; what they make the screen load goes through core's
            # checked reads, so the subscription itself may be the system's (every account).
            self._events = self.panel.events.subscribe(
                Actor.system("admin-app"), kinds=self.WATCHED, callback=gathered.add
            )
        self.show_status()

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()

    def on_screen_resume(self) -> None:
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("jump", "filter") and self._prompt_mode is not None:
            return False  # typed into the prompt (a filter like `state:running`)
        if action == "enter":
            return self._prompt_mode is not None or bool(self.OPENS)
        if action in self.CHANGES and self.staff.kind == "operator":
            return None  # drawn dimmed: an operator looks, does not change
        return True

    def on_changed(self, message: Changed) -> None:
        if self.paused or not self.is_active:
            return
        self.reload()

    def reload(self) -> None:
        if self._loader is not None and not self._loader.is_finished:
            # The running load fetches again once its query is back, with what is asked by
            # then: a query is never cancelled half way (asyncpg would open a connection to
            # cancel it, and reset the pool's), and typing fast runs two queries, not one a key.
            self._stale = True
            return
        self._loader = self.load()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load(self) -> None:
        while True:
            self._stale = False
            rows = await self.fetch(self.search, self._starts[-1], PAGE_SIZE)
            if not self._stale:
                break  # (else these rows are already out of date: not drawn)
        self.show(rows)

    def show(self, rows: list[Row]) -> None:
        self._hold_until = 0.0  # drawn in the next frame, with the keys typed meanwhile
        self.rows = rows
        self.query_one("#rows", LinesTable).show(
            [
                (key, [self.mark_of(key), *self.cells(row)])
                for row in rows
                for key in [self.key_of(row)]
            ]
        )
        self.show_status()

    def status_prefix(self) -> str:
        """What a view adds to the status line (after its name)."""
        return ""

    def mark_of(self, key: str) -> str:
        return MARK if key in self.marked else ""

    def show_status(self) -> None:
        parts = [f"{self.VIEW}", *filter(None, [self.status_prefix()])]
        if self.search:
            parts.append(f"filter /{self.search}")
        page = len(self._starts)
        more = "+" if len(self.rows) == PAGE_SIZE else ""
        parts.append(f"page {page}: {len(self.rows)}{more} rows")
        if self.marked:
            parts.append(f"{len(self.marked)} marked")
        parts.append("PAUSED (p resumes)" if self.paused else "live")
        # Its height is the stylesheet's: new text repaints the line, no layout of the screen.
        update_static(self.query_one("#status", Static), "  ·  ".join(parts))

    def current_key(self) -> str | None:
        table = self.query_one("#rows", LinesTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return None
        return self.key_of(self.rows[table.cursor_row])

    def targets(self) -> list[str]:
        """The marked rows' keys, else the row under the cursor's."""
        if self.marked:
            return sorted(self.marked)
        key = self.current_key()
        return [key] if key is not None else []

    # --- keys ----------------------------------------------------------------------------------

    def action_mark(self) -> None:
        key = self.current_key()
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.show(self.rows)
        table = self.query_one("#rows", LinesTable)
        table.move_cursor(table.cursor_row + 1)

    def action_next_page(self) -> None:
        if len(self.rows) == PAGE_SIZE:
            self._starts.append(self.key_of(self.rows[-1]))
            self.reload()

    def action_previous_page(self) -> None:
        if len(self._starts) > 1:
            self._starts.pop()
            self.reload()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.show_status()
        if not self.paused:
            self.reload()  # what changed meanwhile

    def action_help(self) -> None:
        from tui.admin.help import AdminHelp

        self.app.push_screen(AdminHelp(self))

    def action_jump(self) -> None:
        self.open_prompt(":", "")

    def action_filter(self) -> None:
        self.open_prompt("/", self.search)

    def open_prompt(self, mode: str, value: str) -> None:
        self._prompt_mode = mode
        prompt = self.query_one("#prompt", Input)
        prompt.placeholder = (
            "users · projects · deploys · plans · billing · audit · system  (enter jumps)"
            if mode == ":"
            else self.FILTER_HINT
        )
        prompt.border_title = mode
        prompt.value = value
        prompt.remove_class("-hidden")
        # At once, not at the next turn of the loop (`focus()`): keys typed in one burst
        # (`:projects` and Enter in one packet) must land in the prompt, not in the table.
        self.set_focus(prompt)

    FILTER_HINT: ClassVar[str] = "a name's first letters"

    def close_prompt(self) -> None:
        self._prompt_mode = None
        self.query_one("#prompt", Input).add_class("-hidden")
        self.set_focus(self.query_one("#rows", LinesTable))

    @on(Input.Changed, "#prompt")
    def filter_changed(self, event: Input.Changed) -> None:
        if self._prompt_mode == "/":
            self.apply_filter(event.value)

    def apply_filter(self, text: str) -> None:
        if text != self.search:
            self.search = text
            self._starts = [None]
            self.hold_frames()
            self.reload()

    def _typed(self, value: str) -> None:
        if self._prompt_mode == "/" and value != self.search:
            self.hold_frames()

    def hold_frames(self) -> None:
        """Draw nothing until the rows come (HOLD_FOR_ROWS at most): the key typed in the prompt
        and its rows in one frame. Two frames cost twice the drawing, and Textual draws at most
        one frame in 1/60 s: the rows waited for the frame of the key."""
        if not self._hold_until:
            self.set_timer(HOLD_FOR_ROWS, self._release_frames)
        self._hold_until = time.monotonic() + HOLD_FOR_ROWS

    def _release_frames(self) -> None:
        self._hold_until = 0.0
        self.check_idle()  # (the screen's Idle resumes its update timer if anything changed)

    def _holding(self) -> bool:
        return bool(self._hold_until) and time.monotonic() < self._hold_until

    def _on_timer_update(self) -> None:
        if self._holding():
            self._update_timer.pause()  # what changed stays to draw once the rows come
            return
        super()._on_timer_update()

    async def _on_idle(self, event: events.Idle) -> None:
        # Textual's handler (Screen's, after this one) resumes the update timer when anything
        # is to draw. Kept paused while holding: a timer that ticked (and paused) would draw
        # the rows at its next tick, a frame's time later, where a timer paused for longer
        # than that ticks at once.
        if self._holding() and self._dirty_widgets:
            event.prevent_default()

    def action_enter(self) -> None:
        if self._prompt_mode is None:
            self.open_row()
            return
        mode = self._prompt_mode
        prompt = self.query_one("#prompt", Input)
        # The keys typed before this Enter may still wait in the prompt's queue (a burst):
        # read what was typed once the prompt has handled them; the keys after this Enter
        # go to the table from now on.
        self.close_prompt()
        prompt.call_later(self.prompt_done, mode, prompt)

    def prompt_done(self, mode: str, prompt: Input) -> None:
        if mode == ":":
            self.jump(prompt.value)
        else:
            self.apply_filter(prompt.value)

    def jump(self, text: str) -> None:
        name = text.strip().lstrip(":").lower()
        view = views().get(name)
        if view is None:
            self.notify(
                f"No view {name[:20]!r}: try users, projects, deploys, plans, billing, audit or system.",
                title="Jump",
                severity="warning",
            )
            return
        if name != self.VIEW:
            # Kept once made (installed under its name): coming back to a view costs a
            # load, not composing its widgets again.
            installed = f"admin-{name}"
            if not self.app.is_screen_installed(installed):
                self.app.install_screen(view(), installed)
            self.app.switch_screen(installed)

    def action_back(self) -> None:
        if self._prompt_mode is not None:
            self.close_prompt()
            return
        if self.search:
            self.search = ""
            self._starts = [None]
            self.reload()
            return
        if self.marked:
            self.marked.clear()
            self.show(self.rows)
            return
        if len(self.app.screen_stack) > 2:  # over the dashboard: back to it
            self.app.pop_screen()

    @work(exit_on_error=False, group="act")
    async def run_each(
        self, keys: list[str], what: str, act: Callable[[str], Awaitable[object]]
    ) -> None:
        """`act(key)` for each target in turn; the first refusal stops there and is shown."""
        for key in keys:
            await act(key)
        if keys:
            self.done(f"{what}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}")

    def done(self, message: str) -> None:
        """After an action: say what happened, clear the marks, show the rows as they are."""
        self.notify(message, title=self.VIEW.capitalize())
        self.marked.clear()
        self.reload()
