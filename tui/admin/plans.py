"""`:plans`: every plan version, retired ones too, and how many projects are on each.

A plan version is never edited: `n` makes a new version of a code (or a new code), which new
projects get from then on; `x` retires a code for new projects (after typing it), and the
projects on it keep their version. Admins only: an operator sees the keys dimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType

from core.admin.read_models import PlanRow
from core.billing.money import format_amount, parse_price
from core.billing.plans import PlanSpec
from core.errors import ValidationError
from tui.admin.base import AdminListScreen
from tui.admin.prompt import PromptDialog

# The new-version form's fields: (label, what a value looks like).
PLAN_FIELDS = (
    ("Code", "host-1"),
    ("Name", "Host-1"),
    ("Monthly price", "1000 · 0 for free"),
    ("CPU (cores)", "2 · 0.25"),
    ("RAM (MB)", "8192"),
    ("Disk (MB)", "5120"),
    ("Pids", "empty: from the RAM"),
    ("Max services", "10"),
)


def whole(label: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as error:
        raise ValidationError(f"{label} is a whole number, not {text[:20]!r}.") from error


def plan_spec(values: Sequence[str]) -> PlanSpec:
    """The form's values as typed, in `PLAN_FIELDS` order; core checks the ranges."""
    code, name, price, cpu, ram, disk, pids, services = values
    try:
        cores = Decimal(cpu.strip())
    except InvalidOperation as error:
        raise ValidationError(
            f"CPU is a number of cores such as 0.25, not {cpu[:20]!r}."
        ) from error
    return PlanSpec(
        code=code.strip().lower(),
        name=name.strip(),
        price_kopecks=parse_price(price),
        cpu_millicores=int(cores * 1000),
        ram_mb=whole("RAM", ram),
        disk_mb=whole("Disk", disk),
        max_services=whole("Max services", services),
        pids=whole("Pids", pids) if pids.strip() else None,
    )


class AdminPlansScreen(AdminListScreen[PlanRow]):
    VIEW = "plans"
    CSS_PATH = "plans.tcss"
    COLUMNS = ("Plan", "Version", "Name", "Price", "CPU", "RAM", "Disk", "Services", "Projects")
    WATCHED = ("project",)
    FILTER_HINT = "a plan code's first letters"
    CHANGES = frozenset({"new_version", "retire"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_version", "New version"),
        Binding("x", "retire", "Retire"),
    ]

    async def fetch(self, search: str, after: str | None, limit: int) -> list[PlanRow]:
        # A handful of rows: one page, filtered here.
        plans = await self.panel.admin.plans(self.staff)
        return [row for row in plans if row.plan.code.startswith(search.strip().lower())]

    def key_of(self, row: PlanRow) -> str:
        return f"{row.plan.code} v{row.plan.version}"

    def cells(self, row: PlanRow) -> Sequence[str | Text]:
        plan = row.plan
        code = Text(plan.code, "dim" if plan.retired else "bold", justify="left")
        if plan.retired:
            code.append(" (retired)")
        return (
            code,
            Text(str(plan.version), justify="right"),
            plan.name,
            Text(format_amount(plan.price_kopecks, self.panel.settings.currency), justify="right"),
            f"{plan.cpu_millicores / 1000:g}",
            f"{plan.ram_mb} MB",
            f"{plan.disk_mb} MB",
            Text(str(plan.max_services), justify="right"),
            Text(str(row.projects), justify="right"),
        )

    def code_of(self, key: str) -> str:
        return key.split(" ", 1)[0]

    def action_new_version(self) -> None:
        def answered(values: list[str] | None) -> None:
            if not values:
                return
            try:
                spec = plan_spec(values)
            except ValidationError as error:
                self.ghst.show_error(error)
                return
            self.create(spec)

        self.app.push_screen(
            PromptDialog(
                "New plan version",
                "A new version of a code (or a new code): new projects get it, projects on"
                " older versions keep theirs.",
                PLAN_FIELDS,
                confirm_label="Create",
            ),
            answered,
        )

    @work(exit_on_error=False, group="act")
    async def create(self, spec: PlanSpec) -> None:
        plan = await self.panel.admin.create_plan(self.staff, spec)
        self.done(f"created {plan.code} v{plan.version}")

    def action_retire(self) -> None:
        codes = sorted({self.code_of(key) for key in self.targets()})
        if not codes:
            return

        def answered(values: list[str] | None) -> None:
            if values and values[0].strip() == " ".join(codes):
                self.run_each(
                    codes, "retired", lambda code: self.panel.admin.retire_plan(self.staff, code)
                )
            elif values is not None:
                self.notify("Nothing retired: the codes did not match.", severity="warning")

        self.app.push_screen(
            PromptDialog(
                "Retire for new projects",
                f"New projects will not be offered {', '.join(codes)}; the projects on it keep"
                " their version. Type the code to confirm.",
                [("Code", " ".join(codes))],
                confirm_label="Retire",
                danger=True,
            ),
            answered,
        )
