"""`:plans`: every plan version, retired ones too, and how many projects are on each.

A plan version is never edited: `ghst plan add` makes a new one (the app does not yet).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from core.admin.read_models import PlanRow
from core.billing.money import format_amount
from tui.admin.base import AdminListScreen


class AdminPlansScreen(AdminListScreen[PlanRow]):
    VIEW = "plans"
    CSS_PATH = "plans.tcss"
    COLUMNS = ("Plan", "Version", "Name", "Price", "CPU", "RAM", "Disk", "Services", "Projects")
    WATCHED = ("project",)
    FILTER_HINT = "a plan code's first letters"

    async def fetch(self, search: str, after: str | None, limit: int) -> list[PlanRow]:
        # A handful of rows: one page, filtered here.
        plans = await self.panel.admin.plans(self.staff)
        return [plan for plan in plans if plan.code.startswith(search.strip().lower())]

    def key_of(self, row: PlanRow) -> str:
        return f"{row.code} v{row.version}"

    def cells(self, row: PlanRow) -> Sequence[str | Text]:
        code = Text(row.code, "dim" if row.retired else "bold", justify="left")
        if row.retired:
            code.append(" (retired)")
        return (
            code,
            Text(str(row.version), justify="right"),
            row.name,
            Text(format_amount(row.price_kopecks, self.panel.settings.currency), justify="right"),
            f"{row.cpu_millicores / 1000:g}",
            f"{row.ram_mb} MB",
            f"{row.disk_mb} MB",
            Text(str(row.max_services), justify="right"),
            Text(str(row.projects), justify="right"),
        )
