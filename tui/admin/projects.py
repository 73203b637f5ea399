"""`:projects`: every project with its live state, plan limits and last deployment; stop,
start, change the plan, delete after typing the name; suspend and resume (an admin's hold,
apart from billing's for non-payment); open the last build log or the live app's logs (the
user dashboard's log screen, reading as staff: operators may read logs too).

The filter (`/`) is words: `state:running`, `user:alice`, `plan:host-1`, and a project name's
first letters; all of them narrow the list in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from core.admin.read_models import ProjectFilter, ProjectRow
from core.billing.money import format_amount
from core.errors import ValidationError
from tui.admin.base import AdminListScreen
from tui.admin.prompt import PromptDialog
from tui.formatting import moment
from tui.screens.logs import LogsScreen

STATE_STYLES = {
    "running": "green",
    "failed": "red",
    "deploying": "yellow",
    "stopped": "dim",
    "suspended": "bold red",
}


def parse_filter(text: str) -> tuple[ProjectFilter, str | None]:
    """(the filter, the owner's username) of `/` words; unknown `key:` words are names."""
    name, state, user, plan = "", None, None, None
    for word in text.split():
        key, _, value = word.partition(":")
        if key == "state" and value:
            state = value.lower()
        elif key == "user" and value:
            user = value.lower()
        elif key == "plan" and value:
            plan = value.lower()
        else:
            name = word
    return ProjectFilter(name_prefix=name, state=state, plan_code=plan), user


class AdminProjectsScreen(AdminListScreen[ProjectRow]):
    VIEW = "projects"
    CSS_PATH = "projects.tcss"
    COLUMNS = ("Project", "User", "State", "Plan", "CPU", "RAM", "Disk", "Price", "Last deploy")
    WATCHED = ("project", "deployment")
    CHANGES = frozenset({"stop", "start", "plan", "delete", "suspend", "resume"})
    FILTER_HINT = "name · state:running · user:NAME · plan:CODE"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop"),
        Binding("t", "start", "Start"),
        Binding("P", "plan", "Plan"),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("S", "suspend", "Suspend"),
        Binding("R", "resume", "Resume"),
        Binding("b", "build_log", "Build log"),
        Binding("l", "logs", "Logs"),
    ]
    KEY_BAR_DROP_ORDER = ("pause", "plan", "resume", "build_log", "jump", "filter")

    async def fetch(self, search: str, after: str | None, limit: int) -> list[ProjectRow]:
        found, username = parse_filter(search)
        return await self.panel.admin.projects(
            self.staff, found, username=username, after=after, limit=limit
        )

    def key_of(self, row: ProjectRow) -> str:
        return row.name

    def cells(self, row: ProjectRow) -> Sequence[str | Text]:
        state = row.state
        if row.held:  # an admin's hold; billing's too, if it also holds
            state = "suspended (admin, unpaid)" if row.suspended else "suspended (admin)"
        elif row.suspended:
            state = "suspended"
        last = "never"
        if row.last_deployment_id is not None:
            last = f"#{row.last_deployment_id} {row.last_deployment_state} {moment(row.last_deployment_at)}"
        price = "-"
        if row.price_kopecks is not None:
            price = format_amount(row.price_kopecks, self.panel.settings.currency)
        return (
            Text(row.name, "bold", justify="left"),
            row.username,
            Text(state, STATE_STYLES.get(state.split(" ")[0], ""), justify="left"),
            row.plan or "defaults",
            f"{row.cpu_millicores / 1000:g}" if row.cpu_millicores else "-",
            f"{row.ram_mb} MB" if row.ram_mb else "-",
            f"{row.disk_mb} MB" if row.disk_mb else "-",
            Text(price, justify="right"),
            last,
        )

    def action_stop(self) -> None:
        self.run_each(self.targets(), "stop", lambda name: self.panel.admin.stop(self.staff, name))

    def action_start(self) -> None:
        names = self.targets()
        self.run_each(names, "start", lambda name: self.panel.admin.start(self.staff, name))

    def action_plan(self) -> None:
        names = self.targets()
        if not names:
            return

        def answered(values: list[str] | None) -> None:
            if values:
                code = values[0].strip().lower()
                self.run_each(
                    names,
                    f"plan {code}",
                    lambda name: self.panel.admin.change_plan(self.staff, name, code),
                )

        self.app.push_screen(
            PromptDialog(
                "Change the plan",
                f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''}: moved to the current "
                "version of the plan, if what each uses fits it (:plans lists them).",
                [("Plan", "host-1")],
            ),
            answered,
        )

    def action_delete(self) -> None:
        names = self.targets()
        if not names:
            return

        def answered(values: list[str] | None) -> None:
            if not values:
                return
            typed = values[0].split()
            if sorted(typed) != names:
                self.notify(
                    "The names typed are not the projects to delete: nothing was deleted.",
                    title="Delete",
                    severity="warning",
                )
                return
            self.run_each(
                names,
                "deleted",
                lambda name: self.panel.admin.delete_project(self.staff, name, name),
            )

        self.app.push_screen(
            PromptDialog(
                "Delete for good",
                f"Type {'the name' if len(names) == 1 else 'each name, with spaces'} to delete "
                f"{' '.join(names)}: containers, images, volumes, versions and all.",
                [("Name", names[0] if len(names) == 1 else "names")],
                confirm_label="Delete",
                danger=True,
            ),
            answered,
        )

    def action_suspend(self) -> None:
        names = self.targets()
        if not names:
            return

        def answered(values: list[str] | None) -> None:
            if values is not None:
                reason = values[0]
                self.run_each(
                    names,
                    "suspended",
                    lambda name: self.panel.admin.suspend(self.staff, name, reason),
                )

        self.app.push_screen(
            PromptDialog(
                "Suspend",
                f"{', '.join(names[:3])}{' …' if len(names) > 3 else ''}: stopped, and deploys, "
                "starts and uploads refused until an admin resumes (a top-up does not). The "
                "owner reads the reason.",
                [("Reason", "abuse report 42")],
                confirm_label="Suspend",
                danger=True,
            ),
            answered,
        )

    def action_resume(self) -> None:
        names = self.targets()
        self.run_each(names, "resumed", lambda name: self.panel.admin.resume(self.staff, name))

    def selected(self) -> ProjectRow | None:
        key = self.current_key()
        return next((row for row in self.rows if row.name == key), None)

    def action_build_log(self) -> None:
        row = self.selected()
        if row is None:
            return
        if row.last_deployment_id is None:
            self.ghst.show_error(ValidationError(f"{row.name} has never been deployed."))
            return
        self.app.push_screen(LogsScreen(row.name, row.last_deployment_id, staff=self.staff))

    def action_logs(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.push_screen(LogsScreen(row.name, staff=self.staff))
