"""Enter (or `i`) on a row of `:users`: one account in full. Its projects with their state,
plan and usage against the plan, its balance, open sessions (address, since, how), keys
(fingerprint, name, scopes) and live tokens (prefix, scopes, projects, expiry; never a
secret). `j` opens the account's projects in `:projects`, `v` views its dashboard as the
user (admins), `r` loads again, esc goes back.

The account's rows come in one load (a constant number of queries, core/admin/read_models);
usage is measured after the first frame, one project after another (docker stats take a
second or two each), each line filled in as its measure comes.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.actor import Actor
from core.admin.read_models import UserDetail
from core.billing.money import format_amount
from core.billing.usage import ProjectUsage
from core.errors import PanelError
from tui.formatting import day, moment
from tui.screens.base import GhstScreen
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar

MEASURING = "measuring…"
MEASURED = 50


def usage_text(usage: ProjectUsage) -> Text:
    """Every meter on one short line: "0.00/1 CPU · 12/256 MiB · 1/1024 MiB · 1/1 services"."""
    text = Text()
    for index, meter in enumerate(usage.meters):
        if index:
            text.append(" · ", "dim")
        style = "red" if meter.fraction >= 0.9 else "yellow" if meter.fraction >= 0.7 else ""
        text.append(meter.text(compact=True), style)
    return text


def section(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


class AdminUserDetailScreen(GhstScreen[None]):
    CSS_PATH = "user_detail.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "projects", "Projects"),
        Binding("v", "view_as", "View as"),
        Binding("r", "reload", "Reload"),
        Binding("escape,q", "back", "Back"),
    ]
    KEY_BAR_DROP_ORDER: ClassVar[tuple[str, ...]] = ("reload",)

    def __init__(self, username: str) -> None:
        super().__init__()
        self.username = username
        self.detail: UserDetail | None = None
        self.usage: dict[str, ProjectUsage | str] = {}

    @property
    def staff(self) -> Actor:
        return self.visitor.staff_actor

    def compose(self) -> ComposeResult:
        yield AppHeader("Admin", "Users", self.username)
        with VerticalScroll(id="detail"):
            yield Static("loading…", id="summary", markup=False)
            yield Static("", id="projects", classes="section")
            yield Static("", id="sessions", classes="section")
            yield Static("", id="keys", classes="section")
            yield Static("", id="tokens", classes="section")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "view_as" and not self.staff.is_operator:
            return None  # drawn dimmed: admins only (core refuses anyone else)
        return True

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load(self) -> None:
        self.detail = await self.panel.admin.user_detail(self.staff, self.username)
        # Measured one by one (docker stats each): the first MEASURED only, for a big account.
        self.usage = {
            project.name: MEASURING if index < MEASURED else "not measured"
            for index, project in enumerate(self.detail.projects)
        }
        self.show()
        # After the first frame with the rows: the measures take seconds.
        self.call_after_refresh(self.measure)

    @work(exclusive=True, exit_on_error=False, group="measure")
    async def measure(self) -> None:
        for name in [name for name, usage in self.usage.items() if usage == MEASURING]:
            try:
                self.usage[name] = await self.panel.admin.project_usage(self.staff, name)
            except PanelError as error:
                self.usage[name] = error.message
            self.show_projects()

    def show(self) -> None:
        detail = self.detail
        if detail is None:
            return
        user = detail.user
        currency = self.panel.settings.currency
        summary = Text.assemble(
            (user.username, "bold"),
            f"  {user.email}  ·  {user.role}  ·  ",
            ("blocked", "bold red") if user.blocked else "active",
            "  ·  balance ",
            (format_amount(user.balance_kopecks, currency), "red" if user.balance_kopecks < 0 else "bold"),
            f"  ·  since {day(user.created_at)}",
        )  # fmt: skip
        self.query_one("#summary", Static).update(summary)
        self.show_projects()
        sessions = section("Address", "Since", "Kind", "Ends")
        for login in detail.sessions:
            sessions.add_row(
                login.remote_addr,
                moment(login.created_at),
                login.auth_method,
                day(login.expires_at),
            )
        self.titled("#sessions", f"Open sessions ({len(detail.sessions)})", sessions)
        keys = section("Fingerprint", "Name", "Scopes")
        for key in detail.keys:
            scopes = "all (login key)" if key.scopes is None else " ".join(sorted(key.scopes))
            keys.add_row(key.fingerprint, key.name, scopes)
        self.titled("#keys", f"SSH keys ({len(detail.keys)})", keys)
        tokens = section("Prefix", "Name", "Scopes", "Projects", "Expires")
        for token in detail.tokens:
            projects = "all" if token.projects is None else " ".join(sorted(token.projects))
            tokens.add_row(
                token.prefix, token.name, " ".join(sorted(token.scopes)), projects,
                day(token.expires_at),
            )  # fmt: skip
        self.titled("#tokens", f"Access tokens ({len(detail.tokens)})", tokens)

    def show_projects(self) -> None:
        if self.detail is None:
            return
        projects = section("Project", "State", "Plan", "Usage against the plan")
        for project in self.detail.projects:
            measured = self.usage.get(project.name, MEASURING)
            usage = (
                usage_text(measured)
                if isinstance(measured, ProjectUsage)
                else Text(measured, "dim")
            )
            state = project.state + (" (suspended)" if project.suspended else "")
            projects.add_row(project.name, state, project.plan or "defaults", usage)
        count, shown = self.detail.user.projects, len(self.detail.projects)
        more = f", the first {shown} shown" if count > shown else ""  # at most a page of 500
        self.titled("#projects", f"Projects ({count}{more})", projects)

    def titled(self, selector: str, title: str, table: Table) -> None:
        widget = self.query_one(selector, Static)
        widget.border_title = title
        widget.update(table if table.row_count else Text("none", "dim"))

    def action_reload(self) -> None:
        self.load()

    def action_projects(self) -> None:
        from tui.admin.projects import AdminProjectsScreen

        self.app.push_screen(AdminProjectsScreen(f"user:{self.username}"))

    def action_view_as(self) -> None:
        self.start_viewing()

    @work(exclusive=True, exit_on_error=False, group="view")
    async def start_viewing(self) -> None:
        viewing = await self.panel.admin.view_as(self.staff, self.username)
        self.ghst.start_viewing(viewing.user, viewing.actor)

    def action_back(self) -> None:
        self.app.pop_screen()
