"""A read-only table drawn as plain lines: one Strip per row, made once per page.

The admin views show a new page of 50 rows on every keystroke of a filter and every page
turn. DataTable renders each cell through Rich (padding, cropping, measuring): about a third
of a millisecond a cell here, so 50 ms for one page of ten columns, the whole budget. This
table pads each cell to its column's width as text and draws a row as a handful of segments;
only the cursor moves a style. No cell is editable and nothing is clickable: a list to read
and move through, with the screen's keys doing the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

GAP = 2
MAX_WIDTH = 48
# A row: its key and its cells (text, style and justification of each).
Cell = Text | str


class LinesTable(Widget, can_focus=True):
    DEFAULT_CSS = """
    LinesTable {
        height: 1fr;
        background: $surface;
    }
    LinesTable > .lines-table--header {
        text-style: bold;
        background: $panel;
    }
    LinesTable > .lines-table--cursor {
        background: $block-cursor-blurred-background;
    }
    LinesTable:focus > .lines-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"lines-table--header", "lines-table--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "cursor(-1000000)", show=False),
        Binding("end", "cursor(1000000)", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.titles: list[str] = []
        self.keys: list[str] = []
        self._cells: list[list[tuple[str, Style, bool]]] = []
        self._widths: list[int] = []
        self.cursor_row = 0
        self._top = 0
        # Each row's cells as drawn (padded to their column), and whether every cell is ASCII
        # (one cell a character: the line's length is known without measuring it).
        self._padded: list[list[tuple[str, Style]]] = []
        self._ascii: list[bool] = []
        # The table's styles (Textual computes `rich_style` from every ancestor, each call), and
        # each cell style added to the base: kept until the styles change.
        self._base: Style | None = None
        self._with_base: dict[Style, Style] = {}

    # --- what the screen calls ------------------------------------------------------------

    def set_columns(self, titles: Sequence[str]) -> None:
        self.titles = list(titles)
        self._pad()

    def show(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Replace the rows (key, cells); the cursor keeps its place, within the new rows."""
        self.keys = [key for key, _ in rows]
        self._cells = [[_cell(cell) for cell in cells] for _, cells in rows]
        widths = [len(title) for title in self.titles]
        for cells in self._cells:
            for index, (text, _, _) in enumerate(cells):
                if index < len(widths):
                    widths[index] = max(widths[index], min(len(text), MAX_WIDTH))
        self._widths = widths
        self._pad()
        self.cursor_row = max(0, min(self.cursor_row, len(self.keys) - 1))
        self._top = min(self._top, self.cursor_row)
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.keys)

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self.keys) - 1))
        visible = max(1, self.size.height - 1)
        if self.cursor_row < self._top:
            self._top = self.cursor_row
        elif self.cursor_row >= self._top + visible:
            self._top = self.cursor_row - visible + 1
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    # --- drawing -------------------------------------------------------------------------------

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.keys) + 1

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._with_base.clear()

    def _base_style(self) -> Style:
        if self._base is None:
            self._base = self.rich_style
        return self._base

    def _pad(self) -> None:
        """Each cell cut and padded to its column once per page, not once per line drawn."""
        widths = self._widths
        self._padded = []
        self._ascii = []
        for cells in self._cells:
            padded = []
            for index, (text, cell_style, right) in enumerate(cells):
                column = widths[index] if index < len(widths) else len(text)
                text = text[:column]
                padded.append((text.rjust(column) if right else text.ljust(column), cell_style))
            self._padded.append(padded)
            self._ascii.append(all(text.isascii() for text, _ in padded))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self._base_style()
        if y == 0:
            style = base + self.get_component_rich_style("lines-table--header")
            return self._line(self.titles_as_cells(), style, width, uniform=True)
        index = self._top + y - 1
        if index >= len(self.keys):
            return Strip.blank(width, base)
        if index == self.cursor_row:
            style = base + self.get_component_rich_style("lines-table--cursor")
            return self._padded_line(index, style, width, uniform=True)
        return self._padded_line(index, base, width, uniform=False)

    def titles_as_cells(self) -> list[tuple[str, Style, bool]]:
        return [(title, Style(), False) for title in self.titles]

    def _line(
        self, cells: list[tuple[str, Style, bool]], style: Style, width: int, *, uniform: bool
    ) -> Strip:
        """One row: each cell padded to its column; `uniform` (header, cursor) keeps only
        the row's style, else each cell adds its own."""
        segments = [Segment(" ", style)]
        for index, (text, cell_style, right) in enumerate(cells):
            column = self._widths[index] if index < len(self._widths) else len(text)
            text = text[:column]
            padded = text.rjust(column) if right else text.ljust(column)
            segments.append(Segment(padded, style if uniform else style + cell_style))
            segments.append(Segment(" " * GAP, style))
        return Strip(segments).crop_extend(0, width, style)

    def _padded_line(self, index: int, style: Style, width: int, *, uniform: bool) -> Strip:
        """`_line` for a row of the page, from its cells padded by `show`: the same
        segments, without cutting and padding each cell, nor measuring the line, again."""
        if not self._ascii[index]:
            return self._line(self._cells[index], style, width, uniform=uniform)
        gap = Segment(" " * GAP, style)
        segments = [Segment(" ", style)]
        length = 1
        for text, cell_style in self._padded[index]:
            segments.append(Segment(text, style if uniform else self._styled(style, cell_style)))
            segments.append(gap)
            length += len(text) + GAP
        if length > width:
            return Strip(segments).crop_extend(0, width, style)
        if length < width:
            segments.append(Segment(" " * (width - length), style))
        return Strip(segments, width)

    def _styled(self, base: Style, cell_style: Style) -> Style:
        if base is not self._base:
            return base + cell_style
        styled = self._with_base.get(cell_style)
        if styled is None:
            styled = self._with_base[cell_style] = base + cell_style
        return styled


def _cell(cell: Cell) -> tuple[str, Style, bool]:
    if isinstance(cell, str):
        return cell, Style(), False
    style = cell.style if isinstance(cell.style, Style) else Style.parse(cell.style or "none")
    return cell.plain, style, cell.justify == "right"
