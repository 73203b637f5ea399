"""Billing: the balance and days left, each project's plan (and a plan change) and usage bars,
the ledger, the invoices, how to top up, and a promised payment.

Everything is read through the services with the signed-in user as the actor; a plan change
shows its price (what today costs more, the new monthly price) and asks before it calls
`subscriptions.change_plan`, whose refusals (one free project, a downgrade that does not fit)
are shown as they are. Usage (docker stats: a second or two per project) is measured after the
screen shows, every project at once, each in its own worker; an event about a project (an
upload, a deployment, its plan) measures that project again, and nothing polls.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from core.billing.invoice_render import as_text
from core.billing.invoices import Invoice
from core.billing.ledger import Entry
from core.billing.money import format_amount
from core.billing.outlook import Outlook, warning_text
from core.billing.plans import Plan
from core.billing.promised import MAX_PROMISES, PROMISE_DAYS, WINDOW, Promise
from core.billing.subscriptions import PlanChangePreview, ProjectPlan
from core.billing.usage import ProjectUsage
from core.errors import PanelError
from core.events import Subscription
from tui.formatting import day, plural
from tui.screens.base import GhstModal, GhstScreen
from tui.screens.confirm import ConfirmDialog
from tui.watch import Changed, watch
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.usage_bars import UsageBars

LEDGER_PAGE = 10
# Events that may change what the screen shows: a project's plan or suspension ("project",
# migration 0018), its disk (an upload), its containers (a deployment).
WATCHED = ("project", "archive", "deployment")


def outlook_line(outlook: Outlook, currency: str) -> str:
    amount = format_amount(outlook.balance, currency)
    spend = format_amount(outlook.daily_spend, currency)
    if outlook.days_left is None:
        return f"Balance {amount}. Nothing is charged today (no active paid project)."
    return (
        f"Balance {amount}: about {plural(outlook.days_left, 'day')} left at"
        f" {spend} a day (today's spend)."
    )


def megabytes(mb: int) -> str:
    return f"{mb / 1024:g} GB" if mb >= 1024 else f"{mb} MB"


def plan_option(plan: Plan, currency: str) -> str:
    """ "Host-1    1 000.00 RUB/mo  2 CPU, 8 GB RAM, 5 GB disk": one line in 66 columns."""
    return (
        f"{plan.name:<8}{format_amount(plan.price_kopecks, currency):>14}/mo"
        f"  {plan.cpu_millicores / 1000:g} CPU, {megabytes(plan.ram_mb)} RAM,"
        f" {megabytes(plan.disk_mb)} disk"
    )


def preview_text(project: str, preview: PlanChangePreview, currency: str) -> str:
    now = preview.current.name if preview.current else "no plan"
    lines = [
        f"Move {project} from {now} to {preview.plan.name}.",
        f"New monthly price: {format_amount(preview.monthly, currency)}.",
    ]
    if preview.extra_today:
        lines.append(f"Today costs {format_amount(preview.extra_today, currency)} more.")
    else:
        lines.append("Nothing more is charged today.")
    lines.append("The new limits apply at once.")
    return "\n".join(lines)


class InvoiceView(GhstModal[None]):
    """One invoice, as its plain-text file says it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    InvoiceView { align: center middle; }
    InvoiceView #invoice-box {
        width: 90%; max-width: 100; height: 90%;
        background: $surface; border: round $border; padding: 0 1;
    }
    """

    def __init__(self, invoice: Invoice, username: str) -> None:
        super().__init__()
        self.invoice = invoice
        self.username = username

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="invoice-box") as box:
            box.border_title = f"Invoice {self.invoice.label}"
            box.border_subtitle = f"also in sftp: /billing/{self.invoice.label}.html"
            yield Static(as_text(self.invoice, self.username), id="invoice-text", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)


class ChangePlanDialog(GhstModal[str | None]):
    """Choose a plan for one project: each highlighted plan shows its price; Enter asks to
    confirm, and the change is made only then. Dismisses with the new plan's name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ChangePlanDialog { align: center middle; }
    ChangePlanDialog #change-box {
        width: 76; max-width: 95%; height: auto; max-height: 95%;
        background: $surface; border: round $border; padding: 0 1;
    }
    ChangePlanDialog #plan-options { height: auto; max-height: 8; border: none; }
    ChangePlanDialog #preview { margin-top: 1; }
    ChangePlanDialog #change-error { color: $text-error; text-style: bold; }
    """

    def __init__(self, project: str, plans: list[Plan], current: Plan | None) -> None:
        super().__init__()
        self.project = project
        self.plans = {plan.code: plan for plan in plans}
        self.current = current

    def compose(self) -> ComposeResult:
        currency = self.panel.settings.currency
        with Vertical(id="change-box") as box:
            box.border_title = f"Plan of {self.project}"
            options = [
                Option(
                    plan_option(plan, currency)
                    + (" (now)" if self.current and plan.id == self.current.id else ""),
                    id=plan.code,
                )
                for plan in self.plans.values()
            ]
            yield OptionList(*options, id="plan-options")
            yield Static("", id="preview", markup=False)
            yield Static("", id="change-error", markup=False)
            yield Static("Enter: choose this plan   Esc: cancel", classes="muted")

    def handle_error(self, error: BaseException) -> None:
        # A refusal (one free project, a downgrade that does not fit) stays in the dialog.
        if isinstance(error, PanelError):
            self.query_one("#change-error", Static).update(error.message)
            return
        super().handle_error(error)

    @on(OptionList.OptionHighlighted, "#plan-options")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.load_preview(event.option.id)

    @work(exclusive=True, exit_on_error=False, group="preview")
    async def load_preview(self, code: str) -> None:
        preview = await self.panel.subscriptions.preview_change(self.actor, self.project, code)
        currency = self.panel.settings.currency
        self.query_one("#preview", Static).update(preview_text(self.project, preview, currency))

    @on(OptionList.OptionSelected, "#plan-options")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.ask(event.option.id)

    @work(exclusive=True, exit_on_error=False, group="preview")
    async def ask(self, code: str) -> None:
        """Confirm the change to `code`, its price (freshly previewed) in the question."""
        self.query_one("#change-error", Static).update("")
        if self.current is not None and self.current.code == code:
            self.query_one("#change-error", Static).update("The project is on this plan already.")
            return
        preview = await self.panel.subscriptions.preview_change(self.actor, self.project, code)
        currency = self.panel.settings.currency

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.change(code)

        self.app.push_screen(
            ConfirmDialog(
                f"Change the plan of {self.project}?",
                preview_text(self.project, preview, currency),
                confirm_label=f"Move to {preview.plan.name}",
            ),
            answered,
        )

    @work(exclusive=True, exit_on_error=False, group="change")
    async def change(self, code: str) -> None:
        self.query_one("#change-error", Static).update("")
        changed = await self.panel.subscriptions.change_plan(self.actor, self.project, code)
        self.dismiss(changed.plan.name)

    def action_cancel(self) -> None:
        self.dismiss(None)


def promise_text(offer: int, spend: int, taken: int, currency: str) -> str:
    """What a promised payment grants and its rules, and how many the user has left."""
    left = max(0, MAX_PROMISES - taken)
    return "\n".join(
        [
            f"A promised payment credits {format_amount(offer, currency)} now: {PROMISE_DAYS}"
            f" days of your current spend ({format_amount(spend, currency)} a day), so your"
            " sites keep running, or come back, until your money arrives.",
            f"It is taken back at your next top-up, or after {PROMISE_DAYS} days.",
            f"Rule: at most {MAX_PROMISES} in {WINDOW.days} days, one at a time, and only when"
            f" your balance no longer covers {PROMISE_DAYS} days.",
            f"You have taken {taken} in the last {WINDOW.days} days: {left} left.",
        ]
    )


class PromiseDialog(GhstModal[bool]):
    """A promised payment: what it grants and the rule, then y takes it. A refusal (too many,
    one still open, money left) stays in the dialog, in the core's words."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "take", "Take it"),
    ]
    DEFAULT_CSS = """
    PromiseDialog { align: center middle; }
    PromiseDialog #promise-box {
        width: 76; max-width: 95%; height: auto; max-height: 95%;
        background: $surface; border: round $border; padding: 0 1;
    }
    PromiseDialog #promise-error { color: $text-error; text-style: bold; margin-top: 1; }
    PromiseDialog #promise-error.-empty { display: none; }
    PromiseDialog #promise-keys { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="promise-box") as box:
            box.border_title = "Promised payment"
            yield Static("…", id="promise-text", markup=False)
            yield Static("", id="promise-error", classes="-empty", markup=False)
            yield Static("y: take it   n, Esc: cancel", id="promise-keys", classes="muted")

    def on_mount(self) -> None:
        self.explain()

    @work(exclusive=True, exit_on_error=False, group="promise")
    async def explain(self) -> None:
        promised, actor = self.panel.promised, self.actor
        offer, history = await asyncio.gather(promised.offer(actor), promised.history(actor))
        since = datetime.now(UTC) - WINDOW
        taken = sum(1 for promise in history if promise.taken_at > since)
        currency = self.panel.settings.currency
        spend = offer // PROMISE_DAYS
        self.query_one("#promise-text", Static).update(promise_text(offer, spend, taken, currency))

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, PanelError):
            refusal = self.query_one("#promise-error", Static)
            refusal.update(f"Not taken. {error.message}")
            refusal.remove_class("-empty")
            return
        super().handle_error(error)

    @work(exclusive=True, exit_on_error=False, group="take")
    async def action_take(self) -> None:
        promise: Promise = await self.panel.promised.take(self.actor)
        self.notify(
            f"{format_amount(promise.amount, self.panel.settings.currency)} credited until"
            f" {promise.expires_at:%Y-%m-%d %H:%M} UTC.",
            title="Promised payment taken",
        )
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class BillingScreen(GhstScreen[None]):
    TITLE = "Billing"
    CSS_PATH = "billing.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "change_plan", "Change plan"),
        Binding("i", "open_invoice", "Open invoice"),
        Binding("p", "promise", "Promised payment"),
        Binding("right_square_bracket", "older", "Older entries"),
        Binding("left_square_bracket", "newer", "Newer entries"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[str, ProjectPlan | None] = {}
        self.invoices: list[Invoice] = []
        self.entries: list[Entry] = []
        # Ledger pages: the id each shown page starts below (None: the newest).
        self._pages: list[int | None] = [None]
        self._more = False
        self.project_ids: dict[int, str] = {}
        self.bars: dict[str, UsageBars] = {}
        self._dirty: set[str] = set()  # projects an event named while the screen was covered
        self._events: Subscription | None = None

    def compose(self) -> ComposeResult:
        yield AppHeader("Home", "Billing")
        with VerticalScroll(id="billing", can_focus=False):
            yield Static("Balance: …", id="outlook", markup=False)
            with Horizontal(id="billing-top"):
                with Vertical(id="plans-box", classes="box") as plans:
                    plans.border_title = "Projects and plans"
                    yield DataTable(id="plans", cursor_type="row", zebra_stripes=True)
                    # Usage bars (CPU, RAM and disk against the plan), a block per project.
                    yield Vertical(id="usage")
                with Vertical(id="topup-box", classes="box") as topup:
                    topup.border_title = "Top up"
                    yield Static("…", id="instructions", markup=False)
            with Horizontal(id="billing-bottom"):
                with Vertical(id="ledger-box", classes="box") as ledger:
                    ledger.border_title = "Ledger"
                    yield DataTable(id="ledger", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="ledger-page", classes="muted", markup=False)
                with Vertical(id="invoices-box", classes="box") as invoices:
                    invoices.border_title = "Invoices"
                    yield DataTable(id="invoices", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="no-invoices", classes="muted", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#plans", DataTable).add_columns("Project", "Plan", "Per month")
        self.query_one("#ledger", DataTable).add_columns("Date", "Kind", "Amount", "Reason")
        self.query_one("#invoices", DataTable).add_columns("Month", "No.", "Total")
        self.query_one("#plans", DataTable).focus()
        self._events = watch(self, WATCHED)

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()

    def on_screen_resume(self) -> None:
        self.load()

    def on_changed(self, message: Changed) -> None:
        """Measure again the projects the events name; a plan, suspension or project change
        (or missed events) also reloads the tables. Covered: remembered for the resume."""
        reload = False
        for event in message.events:
            name = self.project_ids.get(event.project_id or 0)
            if event.kind in ("project", "refresh") or name is None:
                reload = True  # a new project has no name here yet
            if event.kind == "refresh":
                self._dirty.update(self.bars)
            elif name is not None:
                self._dirty.add(name)
        if not self.is_active:
            return
        if reload:
            self.load()  # measures the dirty ones once it knows the projects
        else:
            self.remeasure_dirty()

    def remeasure_dirty(self) -> None:
        for name in sorted(self._dirty):
            if name in self.bars:
                self.bars[name].remeasure()
        self._dirty.clear()

    @property
    def currency(self) -> str:
        return self.panel.settings.currency

    @work(exclusive=True, exit_on_error=False, group="load")
    async def load(self) -> None:
        panel, actor = self.panel, self.actor
        outlook, projects, invoices = await asyncio.gather(
            panel.subscriptions.outlook(actor),
            panel.projects.list(actor),
            panel.invoices.list(actor),
        )
        plans = await asyncio.gather(
            *(panel.subscriptions.plan_of(actor, project.name) for project in projects)
        )
        self.plans = {project.name: plan for project, plan in zip(projects, plans, strict=True)}
        self.project_ids = {project.id: project.name for project in projects}
        self.invoices = invoices
        self.show_outlook(outlook)
        self.show_plans()
        await self.show_usage()
        self.show_invoices()
        instructions = panel.payments.instructions()
        self.query_one("#instructions", Static).update(
            "\n\n".join(text for _, text in instructions) or "Ask the operator how to pay."
        )
        await self.load_ledger()

    def show_outlook(self, outlook: Outlook) -> None:
        line = self.query_one("#outlook", Static)
        amount = format_amount(outlook.balance, self.currency)
        warning = warning_text(outlook, amount).replace(" (press b)", "")
        line.set_class(bool(warning), "-warning")
        line.update(warning or outlook_line(outlook, self.currency))

    def show_plans(self) -> None:
        table = self.query_one("#plans", DataTable)
        cursor = table.cursor_row
        table.clear()
        for name, plan in self.plans.items():
            if plan is None:
                cells = [Text(name, "bold"), Text("none"), Text("")]
            else:
                suspended = " (suspended)" if plan.suspended_at else ""
                cells = [
                    Text(name, "bold"),
                    Text(plan.plan.name + suspended),
                    Text(format_amount(plan.plan.price_kopecks, self.currency), justify="right"),
                ]
            table.add_row(*cells, key=name)
        if self.plans:
            table.move_cursor(row=min(cursor, len(self.plans) - 1))

    async def show_usage(self) -> None:
        """A usage block per project, measured in its own worker once mounted (all at once);
        the blocks already shown are measured again only if an event named them."""
        names = list(self.plans)
        if names != list(self.bars):
            await self.query_one("#usage", Vertical).remove_children()
            self.bars = {
                name: UsageBars(
                    stacked=True,
                    measure=partial(self.measure_usage, name),
                    waiting=f"{name} · measuring…",
                )
                for name in names
            }
            await self.query_one("#usage", Vertical).mount_all(self.bars.values())
            self._dirty.update(names)
        self.remeasure_dirty()

    async def measure_usage(self, project: str) -> ProjectUsage:
        return await self.panel.subscriptions.usage(self.actor, project)

    def show_invoices(self) -> None:
        table = self.query_one("#invoices", DataTable)
        table.clear()
        for invoice in self.invoices:
            table.add_row(
                Text(invoice.label),
                Text(str(invoice.number), justify="right"),
                Text(format_amount(invoice.total, self.currency), justify="right"),
                key=invoice.label,
            )
        self.query_one("#no-invoices", Static).update(
            "" if self.invoices else "None yet: each month's invoice comes after the month ends."
        )

    async def load_ledger(self) -> None:
        before = self._pages[-1]
        entries = await self.panel.balances.history(
            self.actor, limit=LEDGER_PAGE + 1, before_id=before
        )
        self._more = len(entries) > LEDGER_PAGE
        self.entries = entries[:LEDGER_PAGE]
        table = self.query_one("#ledger", DataTable)
        table.clear()
        for entry in self.entries:
            table.add_row(
                Text(day(entry.created_at) if entry.day is None else entry.day.isoformat()),
                Text(entry.kind),
                Text(format_amount(entry.amount, self.currency), justify="right"),
                Text(entry.reason),
            )
        page = len(self._pages)
        hints = [f"page {page}"]
        if page > 1:
            hints.append("[ newer")
        if self._more:
            hints.append("] older")
        self.query_one("#ledger-page", Static).update(
            "   ".join(hints) if self.entries else "No entries yet."
        )

    @work(exclusive=True, exit_on_error=False, group="ledger")
    async def page_to(self, pages: list[int | None]) -> None:
        self._pages = pages
        await self.load_ledger()

    def action_older(self) -> None:
        if self._more and self.entries:
            self.page_to([*self._pages, self.entries[-1].id])

    def action_newer(self) -> None:
        if len(self._pages) > 1:
            self.page_to(self._pages[:-1])

    def selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def action_open_invoice(self) -> None:
        label = self.selected("#invoices")
        for invoice in self.invoices:
            if invoice.label == label:
                self.app.push_screen(InvoiceView(invoice, self.user.username))

    @on(DataTable.RowSelected, "#invoices")
    def invoice_selected(self) -> None:
        self.action_open_invoice()

    @on(DataTable.RowSelected, "#plans")
    def plan_selected(self) -> None:
        self.action_change_plan()

    def action_change_plan(self) -> None:
        project = self.selected("#plans")
        if project is not None:
            self.open_plan_change(project)

    @work(exclusive=True, exit_on_error=False, group="change")
    async def open_plan_change(self, project: str) -> None:
        offered = await self.panel.plans.list()
        current = self.plans.get(project)
        self.app.push_screen(
            ChangePlanDialog(project, offered, current.plan if current else None),
            self._plan_changed,
        )

    def _plan_changed(self, plan_name: str | None) -> None:
        if plan_name is not None:
            self.notify(f"The plan is now {plan_name}.", title="Plan changed")
            self.load()

    def action_promise(self) -> None:
        self.app.push_screen(PromiseDialog(), self._promise_taken)

    def _promise_taken(self, taken: bool | None) -> None:
        if taken:
            self.load()

    def action_back(self) -> None:
        self.app.pop_screen()
