"""A project's plan and what it uses against it: CPU, RAM, disk and services, one bar each.

`UsageBars()` draws one line (the project screen: bars only when the terminal is wide enough,
the numbers always); `UsageBars(stacked=True)` a line per meter with a wider bar (a billing
screen's list of projects). Feed it with `show(usage)`, a `core.billing.usage.ProjectUsage`,
or give it `measure` and call `remeasure()` when the panel says the project changed (an event:
a deployment, an upload, its plan): measuring takes docker stats a second or two, so it runs in
a worker, and a burst of events while one runs measures once more after it, never piling up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.content import Content
from textual.widgets import Static
from textual.worker import Worker

from core.billing.usage import Meter, ProjectUsage
from core.errors import PanelError
from tui.widgets.redraw import update_static

Measure = Callable[[], Awaitable[ProjectUsage]]

FULL, EMPTY = "█", "░"
NO_PLAN = "No plan (the panel's defaults)"


def bar(fraction: float, width: int) -> str:
    """`width` cells, the used share filled (a use above the limit fills it all)."""
    filled = round(min(1.0, max(0.0, fraction)) * width)
    return FULL * filled + EMPTY * (width - filled)


def level(meter: Meter) -> str:
    """The colour of a meter: green, then yellow from 70 %, red from 90 % of its limit."""
    if meter.limit is None:
        return "$text-muted"
    if meter.fraction >= 0.9:
        return "$text-error"
    if meter.fraction >= 0.7:
        return "$text-warning"
    return "$text-success"


def bar_width(width: int) -> int:
    """Cells per bar on one line of `width` columns: none where the numbers alone fill it."""
    if width >= 150:
        return 10
    if width >= 110:
        return 5
    return 0


def one_line(usage: ProjectUsage, width: int) -> Content:
    cells = bar_width(width)
    parts: list[str | tuple[str, str]] = [(usage.plan or NO_PLAN, "bold")]
    for meter in usage.meters:
        parts.append(("  ·  " if cells else " · ", "$text-muted"))
        if meter.label != "Services":
            parts.append((f"{meter.label} ", "$text-muted"))
        if cells:
            parts.extend([(bar(meter.fraction, cells), level(meter)), " "])
        parts.append((meter.text(compact=not cells), level(meter) if not cells else ""))
    return Content.assemble(*parts)


def stacked(usage: ProjectUsage, width: int) -> Content:
    cells = max(10, min(30, width - 40))
    lines: list[str | tuple[str, str]] = [(f"{usage.project} · {usage.plan or NO_PLAN}", "bold")]
    for meter in usage.meters:
        lines.extend(
            [
                "\n",
                (f"{meter.label:<9}", "$text-muted"),
                (bar(meter.fraction, cells), level(meter)),
                f" {meter.text()}",
            ]
        )
    return Content.assemble(*lines)


class UsageBars(Static):
    """See the module docstring; empty until the first `show`."""

    DEFAULT_CSS = """
    UsageBars {
        width: 100%;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(
        self,
        *,
        stacked: bool = False,
        id: str | None = None,
        measure: Measure | None = None,
        waiting: str = "",
    ) -> None:
        super().__init__(waiting, id=id, markup=False)
        self.stacked = stacked
        self.usage: ProjectUsage | None = None
        self.measure = measure
        self.measured = 0  # measurements shown so far
        self._measuring: Worker[None] | None = None
        self._again = False

    def remeasure(self) -> None:
        """Measure now, or once more after the measurement running."""
        if self.measure is None:
            return
        if self._measuring is not None and not self._measuring.is_finished:
            self._again = True
            return
        self._again = False
        self._measuring = self.run_worker(self._measure_loop(), group="usage", exit_on_error=False)

    async def _measure_loop(self) -> None:
        assert self.measure is not None
        while True:
            self._again = False
            try:
                self.show(await self.measure())
            except PanelError as error:
                # The same failure again (each event that finishes a deployment measures
                # anew): drawn once, not laid out and drawn again.
                update_static(self, f"Usage: {error.message}")
            self.measured += 1
            if not self._again:
                return

    def show(self, usage: ProjectUsage) -> None:
        self.usage = usage
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self.usage is None:
            return
        width = self.size.width or self.app.size.width
        draw = stacked if self.stacked else one_line
        # The same numbers again (most measures after an event): no layout of the screen.
        update_static(self, draw(self.usage, width))
