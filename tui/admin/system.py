"""`:system`: PostgreSQL, Redis, object storage, dockerd and nginx (reachable, version,
latency), disk free, the deployments queue and open logins, and each serving process with its
open sessions (core.admin.processes: their heartbeats); `r` checks again.

Loaded when shown and on `r`; deployment events update the queue's line (unless paused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from core.admin.system import Check
from tui.admin.base import AdminListScreen


class AdminSystemScreen(AdminListScreen[Check]):
    VIEW = "system"
    CSS_PATH = "system.tcss"
    COLUMNS = ("Check", "State", "Version", "Latency", "Detail")
    WATCHED = ("deployment",)
    FILTER_HINT = "a check's first letters"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "recheck", "Check again")]

    async def fetch(self, search: str, after: str | None, limit: int) -> list[Check]:
        if after is not None:
            return []  # one page
        checks = await self.panel.admin.system(self.staff)
        return [check for check in checks if check.name.lower().startswith(search.lower())]

    def key_of(self, row: Check) -> str:
        return row.name

    def cells(self, row: Check) -> Sequence[str | Text]:
        state = (
            Text("ok", "green", justify="left")
            if row.ok
            else Text("FAIL", "bold red", justify="left")
        )
        latency = "" if row.latency_ms is None else f"{row.latency_ms:.1f} ms"
        return (
            Text(row.name, "bold", justify="left"),
            state,
            row.version,
            Text(latency, justify="right"),
            row.detail,
        )

    def action_recheck(self) -> None:
        self.reload()
