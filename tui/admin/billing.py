"""`:billing`: today's charges, and the accounts at or below zero (since when, how many of
their projects are suspended); `c` credits or debits with a reason, `g` grants a promised
payment, as on `:users`. `m` opens the revenue per month (charges and payments, the last 12
months), `i` every account's invoices (newest first, `/` a username; enter shows one as its
owner reads it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType

from core.admin.read_models import ArrearsRow, InvoiceRow, RevenueRow
from core.billing.money import format_amount
from tui.admin.base import AdminListScreen
from tui.admin.money import ask_adjustment, grant_promise
from tui.formatting import moment
from tui.screens.billing import InvoiceView


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
        Binding("m", "revenue", "Revenue"),
        Binding("i", "invoices", "Invoices"),
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

    def action_revenue(self) -> None:
        self.app.push_screen(AdminRevenueScreen())

    def action_invoices(self) -> None:
        self.app.push_screen(AdminInvoicesScreen())


class AdminRevenueScreen(AdminListScreen[RevenueRow]):
    """Charges for the days of each calendar month and the top-ups received in it."""

    VIEW = "revenue"
    CSS_PATH = "billing.tcss"
    COLUMNS = ("Month", "Charged", "Charges", "Paid")
    WATCHED = ()  # the month's sums move with each day's charge: `r` reads them again
    FILTER_HINT = "a month, as 2026-11"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Read again")]

    async def fetch(self, search: str, after: str | None, limit: int) -> list[RevenueRow]:
        if after is not None:
            return []  # one page: twelve months
        rows = await self.panel.admin.revenue(self.staff)
        return [row for row in rows if f"{row.month:%Y-%m}".startswith(search.strip())]

    def key_of(self, row: RevenueRow) -> str:
        return f"{row.month:%Y-%m}"

    def cells(self, row: RevenueRow) -> Sequence[str | Text]:
        currency = self.panel.settings.currency
        return (
            Text(f"{row.month:%Y-%m}", "bold", justify="left"),
            Text(format_amount(row.charged_kopecks, currency), justify="right"),
            Text(str(row.charges), justify="right"),
            Text(format_amount(row.paid_kopecks, currency), "green", justify="right"),
        )

    def action_reload(self) -> None:
        self.reload()


class AdminInvoicesScreen(AdminListScreen[InvoiceRow]):
    """Every account's invoices, newest number first; enter shows one as its owner sees it."""

    VIEW = "invoices"
    CSS_PATH = "billing.tcss"
    COLUMNS = ("Number", "User", "Month", "Total", "Issued")
    OPENS = "show the invoice as its owner reads it"
    FILTER_HINT = "a username's first letters"

    async def fetch(self, search: str, after: str | None, limit: int) -> list[InvoiceRow]:
        before = int(after) if after is not None else None
        return await self.panel.admin.invoices(
            self.staff, search, before_number=before, limit=limit
        )

    def key_of(self, row: InvoiceRow) -> str:
        return str(row.number)

    def cells(self, row: InvoiceRow) -> Sequence[str | Text]:
        return (
            Text(str(row.number), "bold", justify="right"),
            row.username,
            f"{row.month:%Y-%m}",
            Text(format_amount(row.total, row.currency), justify="right"),
            moment(row.issued_at),
        )

    def open_row(self) -> None:
        key = self.current_key()
        row = next((r for r in self.rows if self.key_of(r) == key), None)
        if row is not None:
            self.show_invoice(row)

    @work(exit_on_error=False, group="open")
    async def show_invoice(self, row: InvoiceRow) -> None:
        invoice = await self.panel.admin.invoice(self.staff, row.number)
        self.app.push_screen(InvoiceView(invoice, row.username))
