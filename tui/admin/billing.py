"""`:billing`: today's charges, and the accounts at or below zero (since when, how many of
their projects are suspended); `c` credits or debits with a reason, `g` grants a promised
payment, as on `:users`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from core.admin.read_models import ArrearsRow
from core.billing.money import format_amount
from tui.admin.base import AdminListScreen
from tui.admin.money import ask_adjustment, grant_promise
from tui.formatting import moment


class AdminBillingScreen(AdminListScreen[ArrearsRow]):
    VIEW = "billing"
    CSS_PATH = "billing.tcss"
    COLUMNS = ("User", "Balance", "At or below zero since", "Suspended projects")
    WATCHED = ("project", "session")
    CHANGES = frozenset({"adjust", "promise"})
    FILTER_HINT = "a username's first letters"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "adjust", "Credit/debit"),
        Binding("g", "promise", "Promise"),
    ]

    def __init__(self, search: str = "") -> None:
        super().__init__(search)
        self.today: tuple[int, int] | None = None

    async def fetch(self, search: str, after: str | None, limit: int) -> list[ArrearsRow]:
        self.today = await self.panel.admin.charges_today(self.staff)
        return await self.panel.admin.arrears(self.staff, search, after=after, limit=limit)

    def key_of(self, row: ArrearsRow) -> str:
        return row.username

    def cells(self, row: ArrearsRow) -> Sequence[str | Text]:
        currency = self.panel.settings.currency
        return (
            Text(row.username, "bold", justify="left"),
            Text(format_amount(row.balance_kopecks, currency), "red", justify="right"),
            moment(row.since),
            Text(str(row.suspended_projects), justify="right"),
        )

    def status_prefix(self) -> str:
        if self.today is None:
            return ""
        entries, kopecks = self.today
        charged = format_amount(kopecks, self.panel.settings.currency)
        return f"today {charged} charged ({entries} entries)"

    def action_adjust(self) -> None:
        ask_adjustment(self)

    def action_promise(self) -> None:
        grant_promise(self)
