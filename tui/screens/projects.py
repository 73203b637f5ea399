"""Projects: the account's projects in a table, the storage they use; create, open or delete one.

Kept up to date while shown, like the project screen: loaded again (one cached list and one
usage query) when an event says one of the account's projects or uploads changed, so a project
made in another session (`sftp mkdir`, another dashboard) or a new upload shows without a
keypress; an idle screen makes no query. A load never overlaps the previous one (an event
during a load loads once more after it), the table is only redrawn when the list changed, and
a failing load is reported once.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.worker import Worker

from core.events import Subscription
from core.projects.service import Project
from tui.formatting import moment, plural, size
from tui.screens.base import GhstScreen
from tui.upload_commands import upload_commands
from tui.watch import Changed, event_drawn, shared_load, watch
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.redraw import set_border_title, update_static
from tui.widgets.width_columns import ColumnsByWidth

# What the list shows: projects, and their uploads (versions, last upload, storage used).
WATCHED = ("project", "archive")
RETRY_SECONDS = 5.0  # a failed load is tried again (no event may come to trigger it)
COLUMNS = (
    ("Name", "name"),
    ("URL", "url"),
    ("Versions", "versions"),
    ("Last upload (UTC)", "last-upload"),
)
# Below WIDE_FROM columns the URL column is left out (the line above the table says every
# project's address is http://<name>.<domain>), so a 40-character name fits in 80 columns.
NARROW_COLUMNS = (
    ("Name", "name"),
    ("Versions", "versions"),
    ("Last upload (UTC)", "last-upload"),
)


def project_url(name: str, domain: str) -> str:
    return f"http://{name}.{domain}"


def project_cells(project: Project, domain: str, narrow: bool) -> list[Text]:
    cells = [
        Text(project.name, "bold"),
        Text(project_url(project.name, domain)),
        Text(str(project.versions), justify="right"),
        Text(moment(project.last_upload_at)),
    ]
    if narrow:
        del cells[1]
    return cells


def usage_line(used: int, quota: int) -> str:
    """ "120.5 MiB of 1.0 GiB used (12%)": the storage all the user's versions take."""
    percent = f" ({used * 100 // quota}%)" if quota > 0 else ""
    return f"{size(used)} of {size(quota)} used{percent}"


class ProjectsScreen(GhstScreen[None]):
    TITLE = "Projects"
    CSS_PATH = "projects.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the table would take Enter first (and not show it in the key bar). First,
        # so the key bar lists the keys in the same order whether the table has focus or not.
        Binding("enter", "open", "Open", priority=True),
        Binding("n", "new", "New project"),
        Binding("d,delete", "delete", "Delete project"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.projects: list[Project] = []
        # The project to put the cursor on at the next load (one just created).
        self._select: str | None = None
        self._shown = False  # a list was loaded and shown at least once
        self.columns = ColumnsByWidth(COLUMNS, NARROW_COLUMNS)
        # The cells' text in the table's rows by project name, in the table's order.
        self._rows: dict[str, list[str]] = {}
        self._usage: tuple[int, int] | None = None
        self._loader: Worker[None] | None = None
        self._events: Subscription | None = None
        self._stale = False  # an event came during a load: load again after it
        self._retry: Timer | None = None
        self._poll_failing = False

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Projects")
        with Vertical(id="projects-page"):
            yield Static("Projects", id="title", classes="card-title")
            yield Static(
                f"Each project is a site at http://<name>.{self.panel.settings.domain}: upload "
                "versions of it with scp or sftp.",
                classes="muted",
                markup=False,
            )
            yield Static("Storage: …", id="usage", markup=False)
            with Vertical(id="projects-box"):
                yield DataTable(id="projects", cursor_type="row", zebra_stripes=True)
                yield Static("Loading your projects…", id="empty", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.set_columns(self.query_one("#projects", DataTable))
        self.query_one("#projects-box").border_title = "Projects"
        self._events = watch(self, WATCHED)

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()
        event_drawn(self)  # gone: the process's ticks need not wait for it

    def on_screen_resume(self) -> None:
        # On first show and on coming back (events that came while covered were not loaded).
        self.reload()

    def retry_later(self) -> None:
        """After a failed load: load again in a while (one timer, only if still shown)."""
        if self._retry is not None:
            self._retry.stop()
        self._retry = self.set_timer(RETRY_SECONDS, lambda: self.on_changed(None))

    def on_changed(self, message: Changed | None) -> None:
        # Covered (even by a dialog): the load waits until the screen is shown again.
        if self.is_active:
            self.poll()

    def poll(self) -> None:
        """Load the list; during a load, once more after it: loads never pile up."""
        if self._loader is not None and not self._loader.is_finished:
            self._stale = True
            return
        self.reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # (Textual runs GhstScreen's handler too, which reports a failed load.)
        if event.worker is self._loader and event.worker.is_finished and self._stale:
            self.poll()

    def reload(self) -> None:
        """Load the list now (a load still running is replaced)."""
        self._stale = False
        self._loader = self.load_projects()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_projects(self) -> None:
        panel = self.panel
        try:

            async def load() -> tuple[list[Project], tuple[int, int]]:
                return await asyncio.gather(
                    panel.projects.list(self.actor), panel.archives.usage(self.actor)
                )

            # The user's other sessions on this list woke on the same event: one load.
            projects, usage = await shared_load(panel.events, ("projects", self.user.id), load)
        except Exception:
            self.retry_later()
            if self._poll_failing:
                return  # already reported: stay quiet until a load works again
            self._poll_failing = True
            raise
        self._poll_failing = False
        select, self._select = self._select, None
        if select is not None or not self._shown or projects != self.projects:
            self._shown = True
            self.show_projects(projects, select)
        if usage != self._usage:
            self._usage = usage
            update_static(
                self.query_one("#usage", Static),
                Content.assemble(("Storage: ", "$text-muted"), usage_line(*usage)),
            )

    def show_projects(self, projects: list[Project], select: str | None = None) -> None:
        """Change the table in place: a new project's row added, a gone one's removed, only
        the cells that changed updated; the rows, the cursor and the scroll stay put."""
        previous = self.selected_project()  # of the list shown until now
        self.projects = projects
        domain = self.panel.settings.domain
        table = self.query_one("#projects", DataTable)
        narrow = bool(self.columns.narrow)
        columns = NARROW_COLUMNS if narrow else COLUMNS
        rows = {project.name: project_cells(project, domain, narrow) for project in projects}
        for name in [name for name in self._rows if name not in rows]:
            table.remove_row(name)
            del self._rows[name]
        for name, cells in rows.items():
            texts = [cell.plain for cell in cells]
            shown = self._rows.get(name)
            if shown is None:
                table.add_row(*cells, key=name)
            else:
                for (_label, key), cell, before in zip(columns, cells, shown, strict=True):
                    if cell.plain != before:
                        table.update_cell(name, key, cell, update_width=True)
            self._rows[name] = texts
        if list(self._rows) != list(rows):  # a new project came last, not in its place
            position = {name: index for index, name in enumerate(rows)}
            table.sort("name", key=lambda cell: position[cell.plain])
            self._rows = {name: self._rows[name] for name in rows}
        set_border_title(self.query_one("#projects-box"), f"Projects · {len(projects)}")
        empty = self.query_one("#empty", Static)
        commands = upload_commands(self.panel.settings, self.user.username, "<name>")
        update_static(
            empty,
            Content.assemble(
                "No projects yet. Press ",
                ("n", "bold $text-accent"),
                " to create one, or make a folder for it over sftp:\n\n    ",
                (commands.sftp, "bold"),
                "\n    ",
                ("mkdir <name>", "bold"),
                "\n\nIts name becomes its address: ",
                (project_url("<name>", domain), "bold"),
            ),
        )
        empty.display = not projects
        table.display = bool(projects)
        wanted = select if select is not None else (previous.name if previous else None)
        for row, project in enumerate(projects):
            if project.name == wanted and row != table.cursor_row:
                table.move_cursor(row=row)
        if projects:
            table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.refresh_bindings()

    def on_resize(self, event: events.Resize) -> None:
        if not self.columns.resized(event.size.width):
            return
        selected = self.selected_project()
        self.set_columns(self.query_one("#projects", DataTable))  # cleared: filled again below
        if self._shown:
            self.show_projects(self.projects, selected.name if selected else None)

    def set_columns(self, table: DataTable[Text]) -> None:
        """The columns for the screen's width (the table is cleared)."""
        self.columns.apply(table, self.app.size.width)
        self._rows.clear()

    def selected_project(self) -> Project | None:
        table = self.query_one("#projects", DataTable)
        if not self.projects or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.projects[row] if 0 <= row < len(self.projects) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in {"open", "delete"} and not self.projects:
            return None  # dimmed in the key bar: there is no project yet
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_new(self) -> None:
        from tui.screens.new_project import NewProjectDialog

        self.app.push_screen(NewProjectDialog(), self._project_created)

    def _project_created(self, project: Project | None) -> None:
        if project is not None:
            self.notify(
                f"{project.name}: press enter to open it and see how to upload a version.",
                title="Project created",
            )
            self._select = project.name
            self.reload()

    @on(DataTable.RowSelected, "#projects")
    def action_open(self) -> None:
        project = self.selected_project()
        if project is None:
            return
        from tui.screens.project import ProjectScreen

        self.app.push_screen(ProjectScreen(project.name))

    def action_delete(self) -> None:
        project = self.selected_project()
        if project is None:
            self.notify("There is no project to delete.", severity="warning")
            return
        from tui.screens.delete_project import DeleteProjectDialog

        self.app.push_screen(DeleteProjectDialog(project), self._project_deleted)

    def _project_deleted(self, project: Project | None) -> None:
        if project is not None:
            versions = project.versions
            self.notify(
                f"{project.name} and its {plural(versions, 'version')} are gone."
                if versions
                else f"{project.name} is gone.",
                title="Project deleted",
            )
            self.reload()
