"""A DataTable whose rows change in place and repaint alone.

`DataTable.update_cell` repaints the whole table for one cell, and `clear` then `add_row` builds
every row again and loses the cursor. A running build's duration ticks every second on every
screen watching it, and one event changes a row on hundreds of screens: `show_rows` changes
only what differs from what the table shows (a row added, removed, a cell changed, the order),
and `update_row` repaints only that row when no column has to change width (the new cell fits
the column and the old one was not the widest), falling back to `update_cell` (which
re-measures the columns) when one may.

A column that widens, a row added: DataTable sets its virtual size, which lays out the whole
screen and repaints all of it (most of an event's cost on a project screen). When the table's
size comes from the stylesheet and its rows fit it without a scrollbar, before and after,
nothing outside the table moves: the table is repainted instead.

Cells drawn are shared by every table of the process (`SHARED_CELLS`): one event changes the
same cell on every screen watching a project, and each table would draw it again (DataTable's
own cache is the table's, and any change empties it). The key is everything the drawing
depends on: the cell's text with its styles, its place, width and height, and the table's
styles for it; so a cell is only ever taken for another with the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Self

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.cache import LRUCache
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from tui.widgets.redraw import fits_as_laid_out

# A row as the table should show it: its key, its cells as plain text (compared with what is
# shown), and how to draw them (called only for a row that is new or changed).
Row = tuple[str, tuple[str, ...], Callable[[], Sequence[Text]]]
# Cells drawn, by everything the drawing depends on (`RowsTable._shared_cell_key`).
SHARED_CELLS: LRUCache[Hashable, list[list[Segment]]] = LRUCache(4096)


class RowsTable(DataTable[Text]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The plain cells of each row put by `show_rows`/`show_row`, by row key.
        self.shown_rows: dict[str, tuple[str, ...]] = {}
        self._measuring = False
        # The table's style while `render_lines` draws (see `rich_style`).
        self._drawing_style: Style | None = None

    @property
    def rich_style(self) -> Style:
        """DataTable asks for it once per line drawn, and each time it is worked out from the
        styles of every ancestor: while the table draws, it is worked out once."""
        if self._drawing_style is not None:
            return self._drawing_style
        return super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._drawing_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._drawing_style = None

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        key = self._shared_cell_key(row_index, column_index, base_style, width, cursor, hover)
        if key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        lines = SHARED_CELLS.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            SHARED_CELLS[key] = lines
        return lines

    def _shared_cell_key(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> Hashable | None:
        """What `DataTable._render_cell` draws from; None for a cell it is not sure of."""
        column_key = self._column_locations.get_key(column_index)
        if column_key is None or column_key not in self.columns:
            return None  # (a row label)
        column = self.columns[column_key]
        if row_index == -1:
            cell: object = column.label
            height = self.header_height
        else:
            row_key = self._row_locations.get_key(row_index)
            if row_key is None or row_key not in self.rows or self.rows[row_key].auto_height:
                return None
            row = self.rows[row_key]
            cell = self._data[row_key].get(column_key)
            height = row.height
        if type(cell) is not Text:
            return None
        fixed = row_index != -1 and (
            row_index < self.fixed_rows or column_index < self.fixed_columns
        )
        styles = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        text = (
            cell.plain,
            cell.style,
            tuple(cell.spans),
            cell.justify,
            cell.overflow,
            cell.no_wrap,
            cell.end,
            cell.tab_size,
        )
        place = (row_index, column_index, width, height, self.cell_padding)
        return (text, place, base_style, styles, cursor, hover, self._show_hover_cursor)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        self._measuring = True
        try:
            super()._update_dimensions(new_rows)
        finally:
            self._measuring = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if layout and self._measuring and fits_as_laid_out(self):
            layout = False  # the new virtual size moves nothing: a repaint of the table
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def show_rows(self, rows: Sequence[Row]) -> bool:
        """Make the table show `rows`, in that order, changing only what differs. True when
        anything changed."""
        wanted = {key for key, _plain, _cells in rows}
        gone = [key for key in self.shown_rows if key not in wanted]
        for key in gone:
            self.remove_row(key)
            del self.shown_rows[key]
        changed = bool(gone)
        for key, plain, cells in rows:
            changed = self.show_row(key, plain, cells) or changed
        order = [key for key, _plain, _cells in rows]
        locations = self._row_locations
        # (A row key equals its string.)
        if [locations.get_key(index) for index in range(self.row_count)] != order:
            self.order(order)
            changed = True
        return changed

    def show_row(
        self, key: str, plain: tuple[str, ...], cells: Callable[[], Sequence[Text]]
    ) -> bool:
        """Add the row, or change the cells of it that differ from what it shows (a new row
        comes last: `show_rows` orders them). True when anything changed."""
        before = self.shown_rows.get(key)
        if before == plain:
            return False
        drawn = cells()
        if before is None:
            self.add_row(*drawn, key=key)
        else:
            self.update_row(
                key,
                {
                    str(column.value): drawn[index]
                    for index, column in enumerate(self.columns)
                    if index >= len(before) or before[index] != plain[index]
                },
            )
        self.shown_rows[key] = plain
        return True

    def clear(self, columns: bool = False) -> RowsTable:
        self.shown_rows.clear()
        return super().clear(columns)

    def order(self, keys: Sequence[str]) -> None:
        """Put the rows in the order of `keys` (every row's key): `sort` by row key, which
        DataTable has no key function for. The cursor stays on its line."""
        self._row_locations = TwoWayDict({RowKey(key): index for index, key in enumerate(keys)})
        self._update_count += 1  # the table's line caches are keyed by it
        self.refresh()

    def update_row(self, row_key: str, cells: Mapping[str, Text]) -> None:
        """Put `cells` (by column key) in the row; repaint the row, or the table if a column
        may have to widen or narrow."""
        key = RowKey(row_key)
        row = self.get_row_index(key)
        shown = self._data[key]
        resized = {
            column: cell
            for column, cell in cells.items()
            if self._resizes(ColumnKey(column), shown.get(ColumnKey(column)), cell)
        }
        for column, cell in cells.items():
            if column in resized:
                self.update_cell(key, column, cell, update_width=True)
            else:
                shown[ColumnKey(column)] = cell
        if len(resized) < len(cells):
            self._update_count += 1  # the table's line caches are keyed by it
            self.refresh_row(row)

    def _resizes(self, column_key: ColumnKey, before: object, cell: Text) -> bool:
        """Whether putting `cell` where `before` was may change its column's width: wider than
        the column, or narrower than a cell that was as wide as the column (perhaps the only
        one). Any other width fits the column as it is."""
        column = self.columns.get(column_key)
        if column is None or not isinstance(before, Text):
            return True
        width = column.content_width
        return cell.cell_len > width or (before.cell_len >= width and cell.cell_len < width)
