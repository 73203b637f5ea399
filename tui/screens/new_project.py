"""The new-project dialog: a name, with the rules it must follow and the address it becomes, and
the plan it runs on, each with its limits and monthly price.

Dismisses with the new `Project`, or None when cancelled. A name core refuses (against the rules,
reserved, taken by anyone) is explained inside the dialog, which stays open with the name kept.
The free plan is offered while the account has no free project; otherwise it is shown, disabled,
with the reason.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from core.billing.money import format_amount
from core.billing.plans import Plan
from core.errors import ConflictError, NotFoundError, ValidationError
from core.projects.service import Project
from tui.screens.base import GhstModal
from tui.widgets.form import ErrorLine, Field, dialog_actions

NAME_RULES = (
    "3 to 40 characters: lowercase letters, digits and hyphens, starting with a letter. "
    "Names are unique across the panel."
)


class PlanChoice(RadioSet, inherit_bindings=False):
    """The plans: arrows move, space chooses, Enter is left to create the project."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,right", "next_button", "Next plan", show=False),
        Binding("up,left", "previous_button", "Previous plan", show=False),
        Binding("space", "toggle_button", "Choose", show=False),
    ]


class NewProjectDialog(GhstModal[Project | None]):
    CSS_PATH = "new_project.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "submit", "Create", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False
        self._plans: list[Plan] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("New project", id="dialog-title")
            yield Static(
                "The name becomes the project's address and the folder you upload to.",
                classes="dialog-hint",
            )
            yield Field(
                "Name",
                Input(id="name", placeholder="e.g. my-shop", max_length=40),
                hint=NAME_RULES,
            )
            yield Static("", id="address")
            yield Static("Plan", id="plan-title")
            yield PlanChoice(id="plans")
            yield Static("", id="plan-note")
            yield ErrorLine()
            yield dialog_actions(
                [("enter", "create"), ("esc", "cancel")],
                Button("Cancel", id="cancel"),
                Button("Create", id="create", variant="primary"),
            )

    def on_mount(self) -> None:
        self._show_address("")
        self.load_plans()

    @work(exclusive=True, exit_on_error=False, group="plans")
    async def load_plans(self) -> None:
        plans = await self.panel.plans.list()
        has_free = await self.panel.subscriptions.has_free_project(self.actor)
        await self._show_plans(plans, has_free)

    async def _show_plans(self, plans: list[Plan], has_free: bool) -> None:
        self._plans = plans
        currency = self.panel.settings.currency
        chosen = next((p for p in plans if not (p.is_free and has_free)), None)
        buttons = [
            RadioButton(
                plan_label(plan, currency),
                disabled=plan.is_free and has_free,
                name=plan.code,
                id=f"plan-{plan.code}",
            )
            for plan in plans
        ]
        radio_set = self.query_one("#plans", RadioSet)
        await radio_set.remove_children()
        await radio_set.mount_all(buttons)
        for plan, button in zip(plans, buttons, strict=True):
            # Turned on once mounted, so the set records it and turns it off for another.
            button.value = plan is chosen
        note = (
            "An account has one free project, and yours has it: choose a paid plan, or move"
            " that project to a paid plan first."
            if has_free and any(p.is_free for p in plans)
            else "Paid plans are charged daily from your balance; change the plan at any time."
        )
        self.query_one("#plan-note", Static).update(note)

    def _chosen_plan(self) -> Plan | None:
        pressed = self.query_one("#plans", RadioSet).pressed_button
        if pressed is None:
            return None
        return next((p for p in self._plans if p.code == pressed.name), None)

    @on(Input.Changed, "#name")
    def _name_changed(self, event: Input.Changed) -> None:
        self._show_address(event.value.strip())

    def _show_address(self, name: str) -> None:
        domain = self.panel.settings.domain
        self.query_one("#address", Static).update(
            Content.assemble(
                # Lined up with the fields: a 17-column label, then the input's padding.
                "Address".ljust(18),
                (f"http://{name or '<name>'}.{domain}", "bold $foreground" if name else ""),
            )
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._busy:
            self.dismiss(None)

    @on(Input.Submitted, "#name")
    @on(Button.Pressed, "#create")
    def action_submit(self) -> None:
        if self._busy:
            return
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.query_one(ErrorLine).set_message("Enter a name for the project.")
            self.query_one("#name").focus()
            return
        plan = self._chosen_plan()
        if plan is None:
            self.query_one(ErrorLine).set_message("Choose a plan for the project.")
            self.query_one("#plans").focus()
            return
        self._set_busy(True)
        self.create_project(name, plan.code)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#create", Button)
        button.disabled = busy
        button.label = "Creating…" if busy else "Create"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def create_project(self, name: str, plan_code: str) -> None:
        try:
            project, _plan = await self.panel.subscriptions.create_project(
                self.actor, name, plan_code
            )
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        self.dismiss(project)

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError | ConflictError | NotFoundError):
            self.query_one(ErrorLine).set_message(error.message)
            self.query_one("#name", Input).focus()
        else:
            super().handle_error(error)


def plan_label(plan: Plan, currency: str) -> str:
    """One line: "Host-0   1 CPU   4 GB RAM   1 GB disk  5 svc   500.00 RUB/mo"."""
    price = "free" if plan.is_free else f"{format_amount(plan.price_kopecks, currency)}/mo"
    return (
        f"{plan.name:<8}{plan.cpu_millicores / 1000:>5g} CPU {_size(plan.ram_mb):>6} RAM"
        f" {_size(plan.disk_mb):>6} disk {plan.max_services:>2} svc {price:>15}"
    )


def _size(mb: int) -> str:
    return f"{mb / 1024:g} GB" if mb >= 1024 else f"{mb} MB"
