"""One project: its state and address, how to upload a version, its uploads and deployments.

Loaded again when an event says the project changed (core/events.py: an upload stored or
refused, a deployment queued or moving through its states, the project changed, in any session
or process), so these appear without a keypress; an idle screen makes no query. A load is up to
three indexed queries (the uploads, the project's status, its latest deployments) behind one
cached project lookup, only those an event can have changed (a deployment's event loads no
uploads); it never overlaps the previous one (an event during a load loads once more after it),
and each part of the screen is redrawn only when what it shows changed: a table's rows are
changed in place, a line of the same size repainted without a layout. While a deployment is
active its duration ticks every `TICK_SECONDS` from what was loaded, without a query. A failing load is reported once, until one works again; a project that is gone
(deleted in another session) closes the screen.

Keys act on what is selected: `d` deploys the version selected in the uploads table (the
newest when that table is not focused); `b`, `x` and `l` act on the deployment selected in
the deployments table. Keys that cannot do anything right now are left out of the key bar;
pressing one anyway says why.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.actions import parse as parse_action
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.worker import Worker

from core.archives.service import Archive
from core.billing.usage import ProjectUsage
from core.deploy.service import Deployment, ProjectStatus, State
from core.errors import NotFoundError
from core.events import Subscription
from tui.formatting import moment, plural, size
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.screens.logs import LogsScreen, duration_text
from tui.screens.projects import project_url
from tui.upload_commands import upload_commands
from tui.watch import (
    Changed,
    changes_waiting,
    event_drawn,
    load_slot,
    shared_load,
    ticks_wait,
    watch,
)
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.redraw import set_border_title, update_static
from tui.widgets.rows_table import Row, RowsTable
from tui.widgets.usage_bars import UsageBars

# What this screen shows; a build log growing ("log") is not.
WATCHED = ("deployment", "archive", "project")
# The two halves of a load: the uploads; the status and the deployments.
UPLOADS, DEPLOYMENTS = "uploads", "deployments"
EVERYTHING = frozenset({UPLOADS, DEPLOYMENTS})
# What an event of each kind can change (any other kind, or a missed event: everything). A
# deployment's change leaves the uploads as they were, an upload the deployments.
LOADED_ON = {"deployment": frozenset({DEPLOYMENTS}), "archive": frozenset({UPLOADS})}
# Events after which the usage bars are measured again (a deployment: once it has finished).
USAGE_CHANGED_ON = frozenset({"archive", "project", "refresh"})
TICK_SECONDS = 1.0
RETRY_SECONDS = 5.0  # a failed load is tried again (no event may come to trigger it)
DEPLOYMENTS_SHOWN = 50
READY = "ready"
COLUMNS = (
    ("Version", "version"),
    ("Size", "size"),
    ("Uploaded (UTC)", "uploaded"),
    ("Check", "check"),
)
DEPLOYMENT_COLUMNS = (
    ("#", "id"),
    ("Version", "version"),
    ("Reason", "reason"),
    ("State", "state"),
    ("Started (UTC)", "started"),
    ("Took", "took"),
)
# Each column's padding (1 on each side) and room for a vertical scrollbar.
TABLE_FRAME = len(COLUMNS) * 2 + 2
UPLOADED_WIDTH = len("2025-02-03 09:12")
REFUSED = "✗ refused: "
# How each deployment state is marked in the table, and the theme colour it is drawn in.
STATE_MARKS = {
    State.QUEUED: ("◌ queued", "text-warning"),
    State.BUILDING: ("◌ building…", "text-warning"),
    State.STARTING: ("◌ starting…", "text-warning"),
    State.RUNNING: ("● running", "text-success"),
    State.FAILED: ("✗ failed", "text-error"),
    State.CANCELLED: ("⊘ cancelled", "text-muted"),
    State.SUPERSEDED: ("○ superseded", "text-muted"),
}
STOPPED_MARK = ("■ stopped", "text-warning")
PROJECT_STATES = {
    "new": ("○ new", "text-muted"),
    "deploying": ("◌ deploying", "text-warning"),
    "running": ("● running", "text-success"),
    "stopped": ("■ stopped", "text-warning"),
    "failed": ("✗ failed", "text-error"),
}
# The deployment states a rollback can go back to (it ran once and its image may be kept).
WENT_LIVE = (State.RUNNING, State.SUPERSEDED)


def check_line(archive: Archive, width: int) -> str:
    """The check result in at most `width` characters (the full message is shown under the table)."""
    if archive.status == READY:
        return "✓ ready"
    line = REFUSED + " ".join(archive.message.split())
    if len(line) > width:
        line = line[: max(width - 1, len(REFUSED))].rstrip() + "…"
    return line


def reason_text(deployment: Deployment) -> str:
    if deployment.reason == "rollback" and deployment.source_id is not None:
        return f"rollback to #{deployment.source_id}"
    if deployment.reason == "heal" and deployment.source_id is not None:
        return f"heal of #{deployment.source_id}"
    return deployment.reason


def lost_text(live: Deployment) -> str:
    """What happened to a live deployment whose containers were found gone."""
    assert live.missing_since is not None
    return (
        f"the containers of #{live.id} were removed outside the panel"
        f" (noticed {moment(live.missing_since)} UTC)"
    )


def took_text(deployment: Deployment) -> str:
    took = deployment.duration
    return "—" if took is None else duration_text(took.total_seconds())


def row_key(id_cell: str) -> str:
    """A deployment's row key in the table: its id ("#12" is shown, "12" is the key)."""
    return id_cell[1:]


def since(deployment: Deployment) -> str:
    """When a deployment went live (or, still running its first steps, when it started)."""
    return moment(deployment.finished_at or deployment.started_at or deployment.created_at)


class ProjectScreen(GhstScreen[None]):
    TITLE = "Project"
    CSS_PATH = "project.tcss"
    # Keys that only make sense in some states are hidden from the key bar by `check_action`
    # then; the `explain` binding after each one (never shown) says why instead.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "deploy", "Deploy"),
        Binding("R", "redeploy", "Redeploy"),
        Binding("R", "explain('redeploy')", show=False),
        Binding("r", "restart", "Restart"),
        Binding("r", "explain('restart')", show=False),
        Binding("s", "stop", "Stop"),
        Binding("s", "start", "Start"),
        Binding("s", "explain('stop')", show=False),
        Binding("b", "rollback", "Roll back"),
        Binding("b", "explain('rollback')", show=False),
        Binding("x", "cancel", "Cancel"),
        Binding("x", "explain('cancel')", show=False),
        # Shown with the deployments table focused (its selection); else the latest one's.
        Binding("l", "build_log", "Build log"),
        Binding("l", "build_log('latest')", show=False),
        Binding("l", "explain('build_log')", show=False),
        Binding("g", "runtime_logs", "App logs"),
        Binding("g", "explain('runtime_logs')", show=False),
        Binding("e", "env", "Env vars"),
        Binding("delete", "delete", "Delete"),  # the version selected in the uploads
        Binding("c", "copy", "Copy scp command", show=False),
        Binding("escape", "back", "Back"),
    ]
    # When the key bar is too narrow for every key (esc and ^q always stay): the keys it
    # leaves out first. What acts on the selected deployment goes last.
    KEY_BAR_DROP_ORDER: ClassVar[tuple[str, ...]] = (
        "env",
        "runtime_logs",
        "stop",
        "start",
        "restart",
        "redeploy",
        "delete",
        "deploy",
        "build_log",
        "cancel",
        "rollback",
    )
    DRAWS_CHANGES_AFTER_LOAD = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.project_name = name
        # None until the first load: then the history as last shown, newest first.
        self.archives: list[Archive] | None = None
        self.deployments: list[Deployment] = []
        self.status: ProjectStatus | None = None
        self._loader: Worker[None] | None = None
        self._events: Subscription | None = None
        self._stale: set[str] = set()  # what events said changed during a load: loaded after it
        self._retry: Timer | None = None
        self._tick_timer: Timer | None = None
        # Bumped by every change made here, so a poll that started before it is not shown.
        self._generation = 0
        self._poll_failing = False
        self._gone = False
        self._styles: dict[str, str] = {}  # theme colours by variable name, set on mount
        self._status_shown: tuple[str, ...] | None = None
        self._select_deployment: int | None = None  # put the cursor there at the next draw
        self._keys_for: tuple[object, ...] = ()  # check_action's answers the bar shows
        self._detail_for = "history"  # the table whose selection the line under them shows

    def compose(self) -> ComposeResult:
        name = self.project_name
        settings = self.panel.settings
        commands = upload_commands(settings, self.user.username, name)
        yield AppHeader("Home", "Projects", name)
        with Vertical(id="project-page"):
            with Horizontal(id="heading"):
                yield Static(name, id="title", classes="card-title", markup=False)
                yield Static(project_url(name, settings.domain), id="url", markup=False)
            yield Static("Loading the status…", id="status", markup=False)
            yield UsageBars(id="usage-bars", measure=self.measure_usage)
            with Vertical(id="upload-box"):
                yield Static(
                    Content.assemble(("scp   ", "$text-muted"), (commands.scp, "bold")),
                    id="scp-command",
                )
                yield Static(
                    Content.assemble(
                        ("sftp  ", "$text-muted"),
                        (commands.sftp, "bold"),
                        ("   then   ", "$text-muted"),
                        (commands.sftp_put, "bold"),
                    ),
                    id="sftp-command",
                )
                yield Static(
                    "A .zip, .tar, .tar.gz or .tgz becomes the next version once checked. "
                    "c copies the scp line.",
                    id="upload-hint",
                    classes="muted",
                    markup=False,
                )
            with Vertical(id="history-box"):
                yield RowsTable(id="history", cursor_type="row", zebra_stripes=True)
                yield Static("Loading the history…", id="empty", markup=False)
            with Vertical(id="deployments-box"):
                yield RowsTable(id="deployments", cursor_type="row", zebra_stripes=True)
                yield Static("", id="no-deployments", markup=False)
            yield Static("", id="detail", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        deployments = self.query_one("#deployments", DataTable)
        for label, key in DEPLOYMENT_COLUMNS:
            deployments.add_column(label, key=key)
        deployments.display = False
        self.query_one("#upload-box").border_title = "Upload a version"
        self.query_one("#history-box").border_title = "Uploads"
        self.query_one("#deployments-box").border_title = "Deployments"
        self._styles = dict(self.app.get_css_variables())
        self._events = watch(self, WATCHED)
        self._tick_timer = self.set_interval(TICK_SECONDS, self.tick, pause=True)

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()
        event_drawn(self)  # gone: the process's ticks need not wait for it

    def colour(self, variable: str, bold: bool = False) -> str:
        """A theme colour as a Rich style for table cells ("dim" for the muted text colour)."""
        value = self._styles.get(variable, "")
        style = value if value.startswith("#") else "dim"
        return f"bold {style}" if bold else style

    def on_screen_resume(self) -> None:
        if self._gone:
            self.dismiss()
            return
        self.poll()  # events that came while covered were not loaded
        self.tick()
        self.query_one("#usage-bars", UsageBars).remeasure()

    async def measure_usage(self) -> ProjectUsage:
        """The plan and its usage bars: measured when the screen is shown, and again when an
        event says an upload, the plan or the project changed or a deployment finished. Once
        for all the user's screens on this project that woke on the same event: each measure
        is docker stats and queries, and an event wakes every screen of the project at once."""
        panel, actor, name = self.panel, self.actor, self.project_name

        async def measure() -> ProjectUsage:
            return await panel.subscriptions.usage(actor, name)

        key = ("usage", self.user.id, name)
        return await shared_load(panel.events, key, measure, slot=False)

    def on_screen_suspend(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.pause()

    def retry_later(self) -> None:
        """After a failed load: load again in a while (one timer, only if still shown)."""
        if self._retry is not None:
            self._retry.stop()
        self._retry = self.set_timer(RETRY_SECONDS, lambda: self.on_changed(None))

    def on_changed(self, message: Changed | None) -> None:
        if message is not None:
            message.taken()
        # Covered (even by a dialog): the load waits until the screen is shown again.
        if self.is_active:
            kinds = message.kinds if message is not None else {"refresh"}
            if kinds & USAGE_CHANGED_ON:
                self.query_one("#usage-bars", UsageBars).remeasure()
            self.poll(frozenset[str]().union(*(LOADED_ON.get(kind, EVERYTHING) for kind in kinds)))
        if not self.load_running:
            event_drawn(self)  # covered: loaded when shown again; or nothing left to load

    def tick(self) -> None:
        """A running build's duration, from what was loaded: no query. Not while an event's
        load is coming or running: it redraws them a moment later, and a tick then is one more
        frame for each of the screens that the same event woke (at scale, most of an event's
        CPU, and the event's own frames wait for it). Nor while another screen of the process
        has an event to draw (`ticks_wait`): its frame comes first."""
        waiting = self.load_running or changes_waiting(self) or ticks_wait()
        if self.schedule_tick() and self.status is not None and not waiting:
            self.show_status(self.status)
            self.tick_deployments()

    def tick_deployments(self) -> None:
        """The active deployments' rows only: the others' cells cannot have changed."""
        table = self.query_one("#deployments", RowsTable)
        for deployment in self.deployments:
            if deployment.active and str(deployment.id) in table.shown_rows:
                table.show_row(*self.deployment_row(deployment))

    def schedule_tick(self) -> bool:
        """Tick while a deployment is active and the screen shown; True when ticking."""
        active = self.is_current and any(deployment.active for deployment in self.deployments)
        if self._tick_timer is not None:
            if active:
                self._tick_timer.resume()
            else:
                self._tick_timer.pause()
        return active

    # --- loading ------------------------------------------------------------------------------

    @property
    def load_running(self) -> bool:
        return self._loader is not None and not self._loader.is_finished

    def poll(self, parts: frozenset[str] = EVERYTHING) -> None:
        """Load `parts` (what an event may have changed); during a load, once more after it
        (what the events in between asked for): loads never pile up."""
        if self._gone:
            return
        if self.load_running:
            self._stale |= parts
            return
        self._stale = set()
        # Until the first load worked, there is no half to keep.
        self._loader = self.load_project(parts if self.status is not None else EVERYTHING)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # (Textual runs GhstScreen's handler too, which reports a failed load.)
        if event.worker is self._loader and event.worker.is_finished and self._stale:
            self.poll(frozenset(self._stale))

    async def fetch(self) -> tuple[list[Archive], ProjectStatus, list[Deployment]]:
        archives, (status, deployments) = await asyncio.gather(
            self.fetch_uploads(), self.fetch_deployments()
        )
        return archives, status, deployments

    async def fetch_uploads(self) -> list[Archive]:
        return await self.panel.archives.list(self.actor, self.project_name)

    async def fetch_deployments(self) -> tuple[ProjectStatus, list[Deployment]]:
        panel, actor, name = self.panel, self.actor, self.project_name
        status, deployments = await asyncio.gather(
            panel.deployments.status(actor, name),
            panel.deployments.list(actor, name, DEPLOYMENTS_SHOWN),
        )
        return status, deployments

    async def fetch_parts(
        self, parts: frozenset[str]
    ) -> tuple[list[Archive] | None, tuple[ProjectStatus, list[Deployment]] | None]:
        """The halves in `parts` (None for the other), each loaded once for all the user's
        screens on this project that woke on the same event."""
        hub, key = self.panel.events, ("project", self.user.id, self.project_name)

        async def uploads() -> list[Archive] | None:
            if UPLOADS not in parts:
                return None
            return await shared_load(hub, (*key, UPLOADS), self.fetch_uploads)

        async def deployments() -> tuple[ProjectStatus, list[Deployment]] | None:
            if DEPLOYMENTS not in parts:
                return None
            return await shared_load(hub, (*key, DEPLOYMENTS), self.fetch_deployments)

        return await asyncio.gather(uploads(), deployments())

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_project(self, parts: frozenset[str] = EVERYTHING) -> None:
        try:
            await self._load_project(parts)
        finally:
            self.call_after_refresh(event_drawn, self)

    async def _load_project(self, parts: frozenset[str]) -> None:
        generation = self._generation
        try:
            if self._events is not None and self._events.project_id is None:
                async with load_slot():
                    project = await self.panel.projects.get(self.actor, self.project_name)
                self._events.project_id = project.id  # from now on, only its events
            archives, loaded = await self.fetch_parts(parts)
        except NotFoundError:
            self._gone = True
            if self._events is not None:
                self._events.close()
            raise
        except Exception:
            self.retry_later()
            if self._poll_failing:
                return  # already reported: stay quiet until a load works again
            self._poll_failing = True
            raise
        self._poll_failing = False
        if generation != self._generation:
            return
        status, deployments = loaded if loaded is not None else (self.status, self.deployments)
        if archives is None:
            archives = self.archives
        if archives is not None and status is not None:
            self.show_all(archives, status, deployments)

    def show_all(
        self, archives: list[Archive], status: ProjectStatus, deployments: list[Deployment]
    ) -> None:
        """Redraw what changed; a running build's duration changes one cell at a time."""
        changed = status != self.status or deployments != self.deployments
        was_active = {deployment.id for deployment in self.deployments if deployment.active}
        if any(d.id in was_active and not d.active for d in deployments):
            self.query_one("#usage-bars", UsageBars).remeasure()  # a deployment finished
        if archives != self.archives:
            self.show_archives(archives)
            changed = True
        self.status = status
        if changed or any(deployment.active for deployment in deployments):
            self.show_status(status)
            self.show_deployments(deployments)
        if changed:
            self.show_detail()
            self.refresh_keys()
        self.schedule_tick()

    def handle_error(self, error: BaseException) -> None:
        super().handle_error(error)
        if self._gone and self.is_active:
            self.dismiss()  # else on coming back from the dialog that covers it

    def on_resize(self) -> None:
        if self.archives is not None:
            self.show_archives(self.archives)
        self.fit_heading()

    def fit_heading(self) -> None:
        """The address under the name when both do not fit on one line (a long name at 80)."""
        heading = self.query_one("#heading")
        url = str(self.query_one("#url", Static).render())
        # The heading's padding, the name, the address's padding, the address.
        needed = 2 + len(self.project_name) + 2 + len(url)
        heading.set_class(needed > self.size.width - 2, "-stacked")

    # --- the status line ----------------------------------------------------------------------

    def show_status(self, status: ProjectStatus) -> None:
        """ "● running  #7 v2-app.zip, live since 2025-02-03 09:20 UTC" and the like."""
        mark, colour = PROJECT_STATES.get(status.state, (status.state, "text-muted"))
        live, latest = status.live, status.latest
        muted = "$text-muted"
        parts: list[tuple[str, str] | str] = [(mark, f"bold ${colour}"), "  "]
        if status.state == "new":
            parts.append(
                ("Not deployed yet: press d to deploy the newest version.", muted)
                if any(a.status == READY for a in self.archives or [])
                else ("Not deployed yet: upload a version, then press d to deploy it.", muted)
            )
        elif status.state == "deploying" and latest is not None:
            state = (
                latest.state if latest.state != State.QUEUED else "queued, waiting for a builder"
            )
            parts.append((f"#{latest.id} {latest.archive_name}", "bold"))
            parts.append(f" {state}")
            if latest.started_at is not None:
                parts.append(f" for {took_text(latest)}")
            if live is not None and live.missing_since is not None:
                healing = latest.reason == "heal" and latest.source_id == live.id
                parts.append((f"; {lost_text(live)}", "$text-warning"))
                if healing:
                    parts.append((": the panel starts it again", muted))
            elif live is not None:
                parts.append((f"; #{live.id} {live.archive_name} serves meanwhile", muted))
        elif status.state == "failed" and latest is not None:
            parts.append((f"#{latest.id} {latest.archive_name}", "bold"))
            parts.append((" failed, and no earlier version is live.", muted))
        elif live is not None:
            parts.append((f"#{live.id} {live.archive_name}", "bold"))
            if status.state == "stopped":
                parts.append((" is stopped: visitors get a 503 page. s starts it.", muted))
            elif live.missing_since is not None:
                parts.append((f": {lost_text(live)}; visitors get an error page.", "$text-error"))
                parts.append((" R builds it again.", muted))
            else:
                parts.append((f", live since {since(live)} UTC", muted))
                if live.reason == "heal" and live.source_id is not None:
                    parts.append(
                        (
                            f" (started again by the panel: the containers of #{live.source_id}"
                            " had been removed outside it)",
                            muted,
                        )
                    )
            if latest is not None and latest.id != live.id and latest.state == State.FAILED:
                parts.append((f"; #{latest.id} failed", "$text-error"))
        shown = (status.url, *(str(part) for part in parts))
        if shown == self._status_shown:
            return
        self._status_shown = shown
        update_static(self.query_one("#status", Static), Content.assemble(*parts))
        update_static(self.query_one("#url", Static), status.url)
        self.fit_heading()

    # --- the versions table -------------------------------------------------------------------

    def show_archives(self, archives: list[Archive]) -> None:
        """Change the table in place (a new upload's row added, a deleted one's removed, only
        the cells that changed updated); the selection stays on the same upload."""
        previous = self.selected_archive()  # of the history shown until now
        self.archives = archives
        table = self.query_one("#history", RowsTable)
        # The "Check" column gets the width the others leave; a refused upload's reason is
        # cut to it (the whole reason is under the table).
        other_columns = sum(
            max((len(cell) for cell in cells), default=0)
            for cells in (
                ["Version", *(archive.name for archive in archives)],
                ["Size", *(size(archive.size) for archive in archives)],
            )
        )
        available = self.query_one("#history-box").content_size.width
        check_width = max(available - TABLE_FRAME - other_columns - UPLOADED_WIDTH, 24)
        table.show_rows([self.archive_row(archive, check_width) for archive in archives])
        versions = sum(1 for archive in archives if archive.status == READY)
        title = f"Uploads · {plural(versions, 'version')}"
        if refused := len(archives) - versions:
            title += f" · {refused} refused"
        set_border_title(self.query_one("#history-box"), title)
        update_static(
            self.query_one("#empty", Static),
            "No uploads yet. Send one with a command above: it shows up here within "
            "seconds, without a keypress.",
        )
        self.query_one("#empty").display = not archives
        table.display = bool(archives)
        if previous is not None:
            for row, archive in enumerate(archives):
                if archive.id == previous.id and row != table.cursor_row:
                    table.move_cursor(row=row)
        if archives:
            if self.focused is None:
                table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.show_detail()
        self.refresh_keys()

    def archive_row(self, archive: Archive, check_width: int) -> Row:
        ready = archive.status == READY
        plain = (
            archive.name,
            size(archive.size),
            moment(archive.created_at),
            check_line(archive, check_width),
        )

        def cells() -> list[Text]:
            return [
                Text(plain[0], "bold" if ready else "dim"),
                Text(plain[1], justify="right"),
                Text(plain[2]),
                Text(
                    plain[3],
                    self.colour("text-success", bold=True) if ready else self.colour("text-error"),
                    no_wrap=True,
                    overflow="ellipsis",
                ),
            ]

        return str(archive.id), plain, cells

    def selected_archive(self) -> Archive | None:
        table = self.query_one("#history", DataTable)
        if not self.archives or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.archives[row] if 0 <= row < len(self.archives) else None

    # --- the deployments table ----------------------------------------------------------------

    def deployment_cells(self, deployment: Deployment) -> tuple[str, ...]:
        live = self.status.live if self.status else None
        stopped = self.status is not None and self.status.state == "stopped"
        if stopped and live is not None and live.id == deployment.id:
            mark = STOPPED_MARK[0]
        else:
            mark = STATE_MARKS.get(deployment.state, (deployment.state, ""))[0]
        return (
            f"#{deployment.id}",
            deployment.archive_name,
            reason_text(deployment),
            mark,
            moment(deployment.started_at, never="—"),
            took_text(deployment),
        )

    def styled_cells(self, deployment: Deployment, cells: tuple[str, ...]) -> list[Text]:
        colour = {mark: colour for mark, colour in (*STATE_MARKS.values(), STOPPED_MARK)}
        state_style = self.colour(colour.get(cells[3], "text-muted"), bold=True)
        dim = deployment.state in (State.CANCELLED, State.SUPERSEDED)
        return [
            Text(cells[0], "dim" if dim else "", justify="right"),
            Text(cells[1], "dim" if dim else "bold"),
            Text(cells[2]),
            Text(cells[3], state_style if not dim else self.colour("text-muted")),
            Text(cells[4]),
            Text(cells[5], justify="right"),
        ]

    def deployment_row(self, deployment: Deployment) -> Row:
        cells = self.deployment_cells(deployment)
        return row_key(cells[0]), cells, lambda: self.styled_cells(deployment, cells)

    def show_deployments(self, deployments: list[Deployment]) -> None:
        """Redraw the table in place: only the cells that changed, a new deployment's row added
        and one no longer listed removed; the rows, the cursor and the scroll stay put."""
        previous = self.selected_deployment()
        self.deployments = deployments
        table = self.query_one("#deployments", RowsTable)
        # Widened as needed: "◌ queued" becomes "● running", "—" a time.
        table.show_rows([self.deployment_row(deployment) for deployment in deployments])
        wanted = self._select_deployment or (previous.id if previous else None)
        self._select_deployment = None
        for row, deployment in enumerate(deployments):
            if deployment.id == wanted and row != table.cursor_row:
                table.move_cursor(row=row)
        failed = sum(1 for deployment in deployments if deployment.state == State.FAILED)
        title = f"Deployments · {len(deployments)}"
        if len(deployments) == DEPLOYMENTS_SHOWN:
            title += " latest"
        if failed:
            title += f" · {failed} failed"
        set_border_title(self.query_one("#deployments-box"), title)
        empty = self.query_one("#no-deployments", Static)
        update_static(
            empty,
            "No deployments yet. Press d to deploy the newest version: it is built, started, "
            "and answers at the address above once healthy.",
        )
        empty.display = not deployments
        table.display = bool(deployments)
        if not deployments and table.has_focus:
            self.set_focus(None)

    def selected_deployment(self) -> Deployment | None:
        table = self.query_one("#deployments", DataTable)
        if not self.deployments or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.deployments[row] if 0 <= row < len(self.deployments) else None

    def deployments_focused(self) -> bool:
        return self.focused is not None and self.focused.id == "deployments"

    def history_focused(self) -> bool:
        return self.focused is not None and self.focused.id == "history"

    # --- the line under the tables ------------------------------------------------------------

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if event.widget.id in ("history", "deployments"):
            self._detail_for = event.widget.id
            self.show_detail()

    @on(DataTable.RowHighlighted, "#history")
    def _history_highlighted(self) -> None:
        if self.history_focused():
            self._detail_for = "history"
        self.show_detail()

    @on(DataTable.RowHighlighted, "#deployments")
    def _deployment_highlighted(self) -> None:
        if self.deployments_focused():
            self._detail_for = "deployments"
        self.show_detail()
        self.refresh_keys()

    def show_detail(self) -> None:
        """The selected upload or deployment in full: a refusal's or a failure's whole reason."""
        detail = self.query_one("#detail", Static)
        if self._detail_for == "deployments":
            deployment = self.selected_deployment()
            if deployment is not None:
                update_static(detail, self.deployment_detail(deployment))
                return
        archive = self.selected_archive()
        if archive is None:
            update_static(detail, "")
        elif archive.status == READY:
            kind = f" {archive.kind} archive," if archive.kind else ""
            update_static(
                detail,
                f"{archive.name}:{kind} {size(archive.size)}, uploaded "
                f"{moment(archive.created_at)} UTC. Press d to deploy it, del to delete it.",
            )
        else:
            update_static(
                detail,
                Content.assemble(
                    (f"{archive.filename} was refused: ", "bold $text-error"),
                    archive.message,
                    (" Nothing of it is stored.", "$text-muted"),
                ),
            )

    def deployment_detail(self, deployment: Deployment) -> Content:
        name = f"#{deployment.id} {deployment.archive_name}"
        live = self.status.live if self.status else None
        if deployment.state == State.FAILED:
            return Content.assemble(
                (f"{name} failed: ", "bold $text-error"),
                deployment.error or "no reason was recorded.",
                (" l shows its build log.", "$text-muted"),
            )
        if deployment.active:
            return Content.assemble(
                (f"{name} is {deployment.state}. ", "bold $text-warning"),
                ("l follows its build log, x cancels it.", "$text-muted"),
            )
        if live is not None and deployment.id == live.id and live.missing_since is not None:
            return Content.assemble(
                (f"{name} is live, but ", "bold $text-warning"),
                f"{lost_text(live)}.",
                (" The panel starts its image again; R builds it again.", "$text-muted"),
            )
        if live is not None and deployment.id == live.id:
            where = f" on 127.0.0.1:{deployment.port}" if deployment.port else ""
            return Content.assemble(
                (f"{name} is live", "bold $text-success"),
                f"{where} since {since(deployment)} UTC.",
                (" R builds it again, r restarts it with the current env vars.", "$text-muted"),
            )
        if deployment.state in WENT_LIVE:
            if deployment.image is None:
                return Content.assemble(
                    f"{name} went live, then was replaced.",
                    (" Its image was pruned, so it cannot be rolled back to.", "$text-muted"),
                )
            return Content.assemble(
                f"{name} went live, then was replaced.",
                (" b rolls back to it (no build).", "$text-muted"),
            )
        if deployment.state == State.CANCELLED:
            return Content.assemble(
                (f"{name} was cancelled", "bold"),
                f": {deployment.error}" if deployment.error else ".",
            )
        return Content(f"{name}: {deployment.state}.")

    # --- which keys do something now ----------------------------------------------------------

    def refresh_keys(self) -> None:
        """Redraw the key bar if what a key can do changed: it asks every binding of the
        screen and the app, too much to do for every event that changed a row."""
        # With the focus: Textual redraws the bar itself when it moves.
        can = (
            self.focused,
            *(self.check_action(name, parameters) for name, parameters in self._actions()),
        )
        if can != self._keys_for:
            self._keys_for = can
            self.refresh_bindings()

    @classmethod
    @cache
    def _actions(cls) -> list[tuple[str, tuple[object, ...]]]:
        actions = []
        for binding in cls.BINDINGS:
            assert isinstance(binding, Binding)
            _namespace, name, parameters = parse_action(binding.action)
            actions.append((name, parameters))
        return actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        status = self.status
        live = status.live if status else None
        if action == "deploy":
            return True if any(a.status == READY for a in self.archives or []) else None
        if action in ("redeploy", "restart", "runtime_logs"):
            return live is not None
        if action == "stop":
            return live is not None and status is not None and status.state != "stopped"
        if action == "start":
            return live is not None and status is not None and status.state == "stopped"
        if action == "rollback":
            return self.deployments_focused() and self.rollback_refusal() is None
        if action == "cancel":
            if not self.deployments_focused():
                return False
            selected = self.selected_deployment()
            return selected is not None and selected.active
        if action == "build_log":
            if parameters:  # the hidden `l`: the latest deployment's log
                return bool(self.deployments)
            return self.deployments_focused() and self.selected_deployment() is not None
        if action == "delete":
            return self.history_focused() and bool(self.archives)
        return True

    def rollback_refusal(self) -> str | None:
        """Why `b` cannot roll back to the selected deployment, or None when it can."""
        deployment = self.selected_deployment()
        if not self.deployments_focused() or deployment is None:
            return (
                "Select the deployment to go back to in the Deployments table (tab), then press b."
            )
        live = self.status.live if self.status else None
        if live is not None and deployment.id == live.id:
            return f"#{deployment.id} is the one running now."
        if deployment.state not in WENT_LIVE:
            return (
                f"#{deployment.id} never went live ({deployment.state}): only a deployment that "
                "ran can be rolled back to."
            )
        if deployment.image is None:
            return f"The image of #{deployment.id} was pruned (only the last few are kept)."
        return None

    def action_explain(self, action: str) -> None:
        """A key pressed while it can do nothing: say why instead of ignoring it."""
        name = self.project_name
        if action == "rollback":
            message = self.rollback_refusal() or ""
        elif action == "cancel":
            deployment = self.selected_deployment()
            if not self.deployments_focused() or deployment is None:
                message = (
                    "Select a queued or building deployment in the Deployments table (tab), "
                    "then press x."
                )
            else:
                message = (
                    f"#{deployment.id} has already finished ({deployment.state}): only a "
                    "queued or building deployment can be cancelled."
                )
        elif action == "build_log":
            message = f"{name} has no deployments yet: press d to deploy the newest version."
        elif action == "runtime_logs":
            message = (
                f"{name} is not running, so there are no live logs. l shows a deployment's "
                "build log."
            )
        else:
            message = f"{name} is not running yet: press d to deploy a version first."
        self.notify(message, title="Nothing to do", severity="warning")

    # --- actions ------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_copy(self) -> None:
        command = upload_commands(self.panel.settings, self.user.username, self.project_name).scp
        self.app.copy_to_clipboard(command)
        self.notify(
            f"{command}\n(If your terminal does not allow it, select the text with the mouse.)",
            title="Copied to your clipboard",
        )

    def action_deploy(self) -> None:
        archive: str | None = None
        if self.history_focused():
            selected = self.selected_archive()
            if selected is not None and selected.status != READY:
                self.notify(
                    f"{selected.filename} was refused when it was uploaded: there is nothing "
                    "to deploy. Select a version.",
                    title="Nothing to deploy",
                    severity="warning",
                )
                return
            archive = selected.name if selected is not None else None
        self.deploy(archive)

    @work(exit_on_error=False, group="act")
    async def deploy(self, archive: str | None) -> None:
        self._generation += 1
        deployment = await self.panel.deployments.deploy(self.actor, self.project_name, archive)
        self.notify(
            f"#{deployment.id} {deployment.archive_name}: the current version keeps serving "
            "until the new one answers. Press l on it to follow the build.",
            title="Deployment queued",
        )
        await self.reload(select=deployment.id)

    def action_redeploy(self) -> None:
        self.queue("redeploy")

    def action_restart(self) -> None:
        self.queue("restart")

    @work(exit_on_error=False, group="act")
    async def queue(self, what: str) -> None:
        self._generation += 1
        deployments, name = self.panel.deployments, self.project_name
        actor = self.actor
        if what == "redeploy":
            deployment = await deployments.redeploy(actor, name)
            title = "Redeploy queued"
            message = f"#{deployment.id}: {deployment.archive_name} is built again."
        else:
            deployment = await deployments.restart(actor, name)
            title = "Restart queued"
            message = (
                f"#{deployment.id}: new containers with the current env vars take over "
                "once they answer."
            )
        self.notify(message, title=title)
        await self.reload(select=deployment.id)

    def action_stop(self) -> None:
        self.app.push_screen(
            ConfirmDialog(
                f"Stop {self.project_name}?",
                "Its containers are stopped and visitors get a 503 page until you start it "
                "again (s). Nothing is deleted.",
                confirm_label="Stop",
                danger=True,
            ),
            self._stop_answered,
        )

    def _stop_answered(self, confirmed: bool | None) -> None:
        if confirmed:
            self.stop_or_start(stop=True)

    def action_start(self) -> None:
        self.stop_or_start(stop=False)

    @work(exit_on_error=False, group="act")
    async def stop_or_start(self, stop: bool) -> None:
        self._generation += 1
        deployments, name = self.panel.deployments, self.project_name
        actor = self.actor
        if stop:
            await deployments.stop(actor, name)
            self.notify(f"{name} answers with a 503 page until you start it.", title="Stopped")
        else:
            await deployments.start(actor, name)
            self.notify(f"{name} is answering again.", title="Started")
        await self.reload()

    def action_rollback(self) -> None:
        deployment = self.selected_deployment()
        if deployment is None or self.rollback_refusal() is not None:
            self.action_explain("rollback")
            return
        self.app.push_screen(
            ConfirmDialog(
                f"Roll back to #{deployment.id}?",
                f"#{deployment.id} ran {deployment.archive_name} (live from {since(deployment)} "
                "UTC). Its image is started again, without a build, with the current env "
                "vars; the version running now keeps serving until it answers.",
                confirm_label="Roll back",
            ),
            lambda confirmed: self._rollback_answered(deployment, confirmed),
        )

    def _rollback_answered(self, deployment: Deployment, confirmed: bool | None) -> None:
        if confirmed:
            self.rollback(deployment)

    @work(exit_on_error=False, group="act")
    async def rollback(self, target: Deployment) -> None:
        self._generation += 1
        deployment = await self.panel.deployments.rollback(self.actor, self.project_name, target.id)
        self.notify(
            f"#{deployment.id} runs the image of #{target.id} ({target.archive_name}).",
            title="Rollback queued",
        )
        await self.reload(select=deployment.id)

    def action_cancel(self) -> None:
        deployment = self.selected_deployment()
        if deployment is None or not deployment.active:
            self.action_explain("cancel")
            return
        self.cancel_deployment(deployment)

    @work(exit_on_error=False, group="act")
    async def cancel_deployment(self, target: Deployment) -> None:
        self._generation += 1
        deployment = await self.panel.deployments.cancel(self.actor, self.project_name, target.id)
        if deployment.state == State.CANCELLED:
            message = f"#{deployment.id} {deployment.archive_name} will not be deployed."
        else:
            message = f"#{deployment.id} stops at its next step; the current version stays."
        self.notify(message, title="Cancelled")
        await self.reload(select=deployment.id)

    def action_build_log(self, which: str = "selected") -> None:
        deployment = self.selected_deployment() if which == "selected" else None
        if deployment is None and self.deployments:
            deployment = self.deployments[0]
        if deployment is None:
            self.action_explain("build_log")
            return
        self.app.push_screen(LogsScreen(self.project_name, deployment.id))

    def action_runtime_logs(self) -> None:
        self.app.push_screen(LogsScreen(self.project_name))

    def action_env(self) -> None:
        from tui.screens.env import EnvScreen

        self.app.push_screen(EnvScreen(self.project_name))

    async def reload(self, select: int | None = None) -> None:
        """Show the state right after a change made here (not waiting for the next poll)."""
        self._select_deployment = select
        archives, status, deployments = await self.fetch()
        self._generation += 1
        self.show_all(archives, status, deployments)
        if select is not None:
            table = self.query_one("#deployments", DataTable)
            for row, deployment in enumerate(self.deployments):
                if deployment.id == select:
                    table.move_cursor(row=row)

    def action_delete(self) -> None:
        archive = self.selected_archive()
        if archive is None:
            self.notify("There is no version to delete.", severity="warning")
            return
        if archive.status != READY:
            self.notify(
                "A refused upload is only a line of history: nothing of it is stored, so "
                "there is nothing to delete.",
                title="Nothing to delete",
                severity="warning",
            )
            return
        self.app.push_screen(
            ConfirmDialog(
                f"Delete {archive.name}?",
                f"{size(archive.size)}, uploaded {moment(archive.created_at)} UTC.\n\n"
                "It is removed from storage and cannot be brought back.",
                confirm_label="Delete version",
                danger=True,
            ),
            lambda confirmed: self._delete_answered(archive, confirmed),
        )

    def _delete_answered(self, archive: Archive, confirmed: bool | None) -> None:
        if confirmed:
            self.delete_version(archive)

    @work(exclusive=True, exit_on_error=False, group="delete")
    async def delete_version(self, archive: Archive) -> None:
        self._generation += 1  # a poll running now may still see the version
        await self.panel.archives.delete(self.actor, self.project_name, archive.name)
        self.notify(f"{archive.name} ({size(archive.size)})", title="Version deleted")
        archives = await self.panel.archives.list(self.actor, self.project_name)
        self._generation += 1
        self.show_archives(archives)
