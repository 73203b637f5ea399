"""A project's environment variables: names and masked values; set, change or unset one.

Values stay masked ("sk••••") unless `v` shows them; the set dialog takes a value like a
password. The app port (what the app listens on in its container, also its PORT variable) is
shown above them and `p` changes it. Changes reach the app's containers when they are next
created: the screen says so, and so does each notification.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.errors import NotFoundError
from core.projects.env_vars import MAX_VARS, EnvVar
from core.projects.service import Project
from tui.screens.app_port import AppPortDialog, app_port_text
from tui.screens.base import GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.screens.set_env import SetEnvDialog
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar

COLUMNS = (("Name", "name"), ("Value", "value"))
# A value shown in full is cut to this many characters (the table is not an editor).
SHOWN_VALUE = 60
APPLIED = "Applied at the next deploy or restart."


def shown_value(value: str) -> str:
    """A value on one line of the table: newlines as ⏎, cut when long."""
    line = value.replace("\r\n", "⏎").replace("\n", "⏎")
    return line if len(line) <= SHOWN_VALUE else line[: SHOWN_VALUE - 1] + "…"


class EnvScreen(GhstScreen[None]):
    TITLE = "Env vars"
    CSS_PATH = "env.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add"),
        Binding("enter", "change", "Change", priority=True),
        Binding("u,delete", "unset", "Unset"),
        Binding("v", "reveal", "Show values"),
        Binding("v", "conceal", "Hide values"),
        Binding("p", "app_port", "App port"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, project: str) -> None:
        super().__init__()
        self.project_name = project
        self.vars: list[EnvVar] = []
        self.revealed = False
        self.project: Project | None = None

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Projects", self.project_name, "Env vars")
        with Vertical(id="env-page"):
            yield Static(
                f"{self.project_name} · environment variables",
                id="title",
                classes="card-title",
                markup=False,
            )
            yield Static(
                Content.assemble(
                    (APPLIED, "bold"),
                    (
                        " Press r on the project to restart it with them, without downtime. "
                        "Values are masked; v shows them.",
                        "$text-muted",
                    ),
                ),
                id="env-note",
            )
            yield Static("", id="app-port")
            with Vertical(id="env-box"):
                yield DataTable(id="env", cursor_type="row", zebra_stripes=True)
                yield Static("Loading the variables…", id="empty", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#env", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#env-box").border_title = "Variables"
        self.load_vars()

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load_vars(self, select: str | None = None) -> None:
        panel, name = self.panel, self.project_name
        try:
            project, found = await asyncio.gather(
                panel.projects.get(self.actor, name), panel.env.list(self.actor, name)
            )
        except NotFoundError:
            self.dismiss()
            raise
        self.show_app_port(project)
        self.show_vars(found, select)

    def show_app_port(self, project: Project) -> None:
        """ "App port: 8000" or "App port: automatic (the image's EXPOSE, else 8080)"."""
        self.project = project
        self.query_one("#app-port", Static).update(
            Content.assemble(
                ("App port: ", "bold"),
                (app_port_text(project.app_port), "bold $text-accent"),
                ("  p changes it; the panel sets PORT to it.", "$text-muted"),
            )
        )

    def show_vars(self, found: list[EnvVar], select: str | None = None) -> None:
        previous = self.selected_var()
        self.vars = found
        table = self.query_one("#env", DataTable)
        table.clear()
        for var in found:
            if self.revealed:
                value = Text(shown_value(var.value)) if var.value else Text("(empty)", "dim")
            else:
                value = Text(var.masked or "(empty)", "dim")
            table.add_row(Text(var.name, "bold"), value, key=var.name)
        self.query_one("#env-box").border_title = (
            f"Variables · {len(found)} of {MAX_VARS}" if found else "Variables"
        )
        empty = self.query_one("#empty", Static)
        empty.update(
            "No variables yet. Press a to add one, e.g. DATABASE_URL or SECRET_KEY: the app "
            "reads them from its environment."
        )
        empty.display = not found
        table.display = bool(found)
        wanted = select if select is not None else (previous.name if previous else None)
        for row, var in enumerate(found):
            if var.name == wanted:
                table.move_cursor(row=row)
        if found:
            table.focus()
        elif table.has_focus:
            self.set_focus(None)
        self.refresh_bindings()

    def selected_var(self) -> EnvVar | None:
        table = self.query_one("#env", DataTable)
        if not self.vars or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.vars[row] if 0 <= row < len(self.vars) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("change", "unset"):
            return True if self.vars else None  # dimmed: nothing to change yet
        if action == "reveal":
            return not self.revealed
        if action == "conceal":
            return self.revealed
        if action == "app_port":
            return True if self.project is not None else None  # dimmed until loaded
        return True

    def action_back(self) -> None:
        self.dismiss()

    def action_add(self) -> None:
        self.app.push_screen(SetEnvDialog(self.project_name), self._var_set)

    @on(DataTable.RowSelected, "#env")
    def action_change(self) -> None:
        var = self.selected_var()
        if var is not None:
            self.app.push_screen(SetEnvDialog(self.project_name, var.name), self._var_set)

    def _var_set(self, var: EnvVar | None) -> None:
        if var is not None:
            self.notify(f"{var.name}. {APPLIED}", title="Variable set")
            self.load_vars(select=var.name)

    def action_app_port(self) -> None:
        if self.project is not None:
            self.app.push_screen(
                AppPortDialog(self.project_name, self.project.app_port), self._app_port_set
            )

    def _app_port_set(self, project: Project | None) -> None:
        if project is not None:
            self.show_app_port(project)
            self.notify(f"{app_port_text(project.app_port)}. {APPLIED}", title="App port set")

    def action_reveal(self) -> None:
        self.revealed = True
        self.show_vars(self.vars)

    def action_conceal(self) -> None:
        self.revealed = False
        self.show_vars(self.vars)

    def action_unset(self) -> None:
        var = self.selected_var()
        if var is None:
            self.notify("There is no variable to unset.", severity="warning")
            return
        self.app.push_screen(
            ConfirmDialog(
                f"Unset {var.name}?",
                "The app's containers keep it until the next deploy or restart.",
                confirm_label="Unset",
                danger=True,
            ),
            lambda confirmed: self._unset_answered(var, confirmed),
        )

    def _unset_answered(self, var: EnvVar, confirmed: bool | None) -> None:
        if confirmed:
            self.unset_var(var)

    @work(exclusive=True, exit_on_error=False, group="unset")
    async def unset_var(self, var: EnvVar) -> None:
        await self.panel.env.unset(self.actor, self.project_name, var.name)
        self.notify(f"{var.name}. {APPLIED}", title="Variable unset")
        self.show_vars(await self.panel.env.list(self.actor, self.project_name))
