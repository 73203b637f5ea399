"""`:deploys`: the deployments queue and the running jobs across every worker, newest first,
with each job's worker and lease (renewed by its heartbeat); cancel (`x`) and requeue (`R`).

The filter (`/`) is words: `all` (every deployment, not only the active ones),
`state:failed`, and a project name's first letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from core.admin.read_models import DeploymentRow
from tui.admin.base import AdminListScreen
from tui.formatting import moment


def parse_filter(text: str) -> tuple[bool, str | None, str]:
    """(active only, state, project prefix) of `/` words."""
    active_only, state, project = True, None, ""
    for word in text.split():
        key, _, value = word.partition(":")
        if word == "all":
            active_only = False
        elif key == "state" and value:
            state = value.lower()
        else:
            project = word
    return active_only, state, project


def lease_text(row: DeploymentRow, now: datetime) -> str:
    """How long the worker's lease has left: a dead worker's runs out."""
    if row.lease_expires_at is None:
        return ""
    left = (row.lease_expires_at - now).total_seconds()
    return f"{left:.0f} s left" if left >= 0 else f"lapsed {-left:.0f} s ago"


class AdminDeploysScreen(AdminListScreen[DeploymentRow]):
    VIEW = "deploys"
    CSS_PATH = "deploys.tcss"
    COLUMNS = ("#", "Project", "By", "Job", "State", "Archive", "Worker", "Lease", "Queued")
    WATCHED = ("deployment",)
    CHANGES = frozenset({"cancel", "requeue"})
    FILTER_HINT = "all · state:failed · a project's first letters"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "cancel", "Cancel"),
        Binding("R", "requeue", "Requeue"),
    ]

    async def fetch(self, search: str, after: str | None, limit: int) -> list[DeploymentRow]:
        active_only, state, project = parse_filter(search)
        return await self.panel.admin.deployments(
            self.staff,
            active_only=active_only,
            state=state,
            project_prefix=project,
            before_id=int(after) if after is not None else None,
            limit=limit,
        )

    def key_of(self, row: DeploymentRow) -> str:
        return str(row.id)

    def cells(self, row: DeploymentRow) -> Sequence[str | Text]:
        job = row.operation if row.operation != "deploy" else row.reason
        state = row.state + (" (cancelling)" if row.cancel_requested else "")
        return (
            Text(str(row.id), justify="right"),
            Text(row.project, "bold", justify="left"),
            row.username,
            job,
            state,
            row.archive_name,
            row.worker or "",
            lease_text(row, datetime.now(UTC)),
            moment(row.created_at),
        )

    def project_of(self, key: str) -> str:
        return next(row.project for row in self.rows if str(row.id) == key)

    def action_cancel(self) -> None:
        self.run_each(
            self.targets(),
            "cancel",
            lambda key: self.panel.admin.cancel(self.staff, self.project_of(key), int(key)),
        )

    def action_requeue(self) -> None:
        self.run_each(
            self.targets(),
            "requeue",
            lambda key: self.panel.admin.requeue(self.staff, self.project_of(key), int(key)),
        )
