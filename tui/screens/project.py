"""One project: how to upload a version of it, and its history of uploads, kept up to date.

The history (versions and refused uploads, newest first) is polled every `POLL_SECONDS` while
the screen is shown, so an upload made with scp or sftp appears without a keypress. A poll is
one cached project lookup and one indexed query; it never overlaps the previous one, and the
table is only redrawn when the history changed. A failing poll is reported once, not every
1.5 s; a project that is gone (deleted in another session) closes the screen.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.worker import Worker

from core.archives import Archive
from core.errors import NotFoundError
from tui.formatting import moment, plural, size
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.screens.projects import project_url
from tui.upload_commands import upload_commands
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar

POLL_SECONDS = 1.5
READY = "ready"
COLUMNS = (
    ("Version", "version"),
    ("Size", "size"),
    ("Uploaded (UTC)", "uploaded"),
    ("Check", "check"),
)
# Each column's padding (1 on each side) and room for a vertical scrollbar.
TABLE_FRAME = len(COLUMNS) * 2 + 2
UPLOADED_WIDTH = len("2025-02-03 09:12")
REFUSED = "✗ refused: "


def check_line(archive: Archive, width: int) -> str:
    """The check result in at most `width` characters (the full message is shown under the table)."""
    if archive.status == READY:
        return "✓ ready"
    line = REFUSED + " ".join(archive.message.split())
    if len(line) > width:
        line = line[: max(width - 1, len(REFUSED))].rstrip() + "…"
    return line


class ProjectScreen(GhstScreen[None]):
    TITLE = "Project"
    CSS_PATH = "project.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy scp command"),
        Binding("d,delete", "delete", "Delete version"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.project_name = name
        # None until the first load: then the history as last shown, newest first.
        self.archives: list[Archive] | None = None
        self._loader: Worker[None] | None = None
        self._poll_timer: Timer | None = None
        # Bumped by every change made here, so a poll that started before it is not shown.
        self._generation = 0
        self._poll_failing = False
        self._gone = False
        self._ready_style = "bold"  # theme colours, set on mount
        self._refused_style = ""

    def compose(self) -> ComposeResult:
        name = self.project_name
        settings = self.panel.settings
        commands = upload_commands(settings, self.user.username, name)
        yield AppHeader("Home", "Projects", name)
        with Vertical(id="project-page"):
            with Horizontal(id="heading"):
                yield Static(name, id="title", classes="card-title", markup=False)
                yield Static(project_url(name, settings.domain), id="url", markup=False)
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
                    "Send a .zip, .tar, .tar.gz or .tgz (any name instead of app.zip). Each "
                    "upload is checked, then becomes the next version below.",
                    id="upload-hint",
                    classes="muted",
                    markup=False,
                )
            with Vertical(id="history-box"):
                yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
                yield Static("Loading the history…", id="empty", markup=False)
            yield Static("", id="detail", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#upload-box").border_title = "Upload a version"
        self.query_one("#history-box").border_title = "History"
        colours = self.app.get_css_variables()
        self._ready_style = f"bold {colours['text-success']}"
        self._refused_style = colours["text-error"]
        self._poll_timer = self.set_interval(POLL_SECONDS, self.poll, pause=True)

    def on_screen_resume(self) -> None:
        if self._gone:
            self.dismiss()
            return
        self.poll()
        if self._poll_timer is not None:
            self._poll_timer.resume()

    def on_screen_suspend(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.pause()

    def poll(self) -> None:
        """Load the history unless a load is still running: polls never pile up."""
        if self._gone or (self._loader is not None and not self._loader.is_finished):
            return
        self._loader = self.load_history()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_history(self) -> None:
        generation = self._generation
        try:
            archives = await self.panel.archives.list(self.user.id, self.project_name)
        except NotFoundError:
            self._gone = True
            if self._poll_timer is not None:
                self._poll_timer.stop()
            raise
        except Exception:
            if self._poll_failing:
                return  # already reported: stay quiet until a poll works again
            self._poll_failing = True
            raise
        self._poll_failing = False
        if generation == self._generation and archives != self.archives:
            self.show_archives(archives)

    def handle_error(self, error: BaseException) -> None:
        super().handle_error(error)
        if self._gone and self.is_active:
            self.dismiss()  # else on coming back from the dialog that covers it

    def on_resize(self) -> None:
        if self.archives is not None:
            self.show_archives(self.archives)

    def show_archives(self, archives: list[Archive]) -> None:
        previous = self.selected_archive()  # of the history shown until now
        self.archives = archives
        table = self.query_one("#history", DataTable)
        table.clear()
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
        for archive in archives:
            ready = archive.status == READY
            table.add_row(
                Text(archive.name, "bold" if ready else "dim"),
                Text(size(archive.size), justify="right"),
                Text(moment(archive.created_at)),
                Text(
                    check_line(archive, check_width),
                    self._ready_style if ready else self._refused_style,
                    no_wrap=True,
                    overflow="ellipsis",
                ),
                key=str(archive.id),
            )
        versions = sum(1 for archive in archives if archive.status == READY)
        title = f"History · {plural(versions, 'version')}"
        if refused := len(archives) - versions:
            title += f" · {refused} refused"
        self.query_one("#history-box").border_title = title
        empty = self.query_one("#empty", Static)
        empty.update(
            "No uploads yet. Send one with a command above: it shows up here within "
            "seconds, without a keypress."
        )
        empty.display = not archives
        table.display = bool(archives)
        if previous is not None:
            for row, archive in enumerate(archives):
                if archive.id == previous.id:
                    table.move_cursor(row=row)
        if archives:
            if self.focused is None:
                table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.show_detail()
        self.refresh_bindings()

    def selected_archive(self) -> Archive | None:
        table = self.query_one("#history", DataTable)
        if not self.archives or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.archives[row] if 0 <= row < len(self.archives) else None

    @on(DataTable.RowHighlighted, "#history")
    def show_detail(self) -> None:
        """The selected upload in full under the table: a refused one's whole reason."""
        archive = self.selected_archive()
        detail = self.query_one("#detail", Static)
        if archive is None:
            detail.update("")
        elif archive.status == READY:
            kind = f" {archive.kind} archive," if archive.kind else ""
            detail.update(
                f"{archive.name}:{kind} {size(archive.size)}, uploaded "
                f"{moment(archive.created_at)} UTC. Press d to delete it."
            )
        else:
            detail.update(
                Content.assemble(
                    (f"{archive.filename} was refused: ", "bold $text-error"),
                    archive.message,
                    (" Nothing of it is stored.", "$text-muted"),
                )
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "delete" and not self.archives:
            return None  # dimmed in the key bar: nothing uploaded yet
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_copy(self) -> None:
        command = upload_commands(self.panel.settings, self.user.username, self.project_name).scp
        self.app.copy_to_clipboard(command)
        self.notify(
            f"{command}\n(If your terminal does not allow it, select the text with the mouse.)",
            title="Copied to your clipboard",
        )

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
        user_id = self.user.id
        await self.panel.archives.delete(user_id, self.project_name, archive.name)
        self.notify(f"{archive.name} ({size(archive.size)})", title="Version deleted")
        archives = await self.panel.archives.list(user_id, self.project_name)
        self._generation += 1
        self.show_archives(archives)
