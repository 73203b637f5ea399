"""A DataTable whose rows change in place and repaint alone.

`DataTable.update_cell` repaints the whole table for one cell. A running build's duration
ticks every second on every screen watching it, and one event changes a row on hundreds of
screens: `update_row` repaints only that row when no column has to change width (the same
cell width as before), and falls back to `update_cell` (which re-measures the columns) when
one does.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey


class RowsTable(DataTable[Text]):
    def update_row(self, row_key: str, cells: Mapping[str, Text]) -> None:
        """Put `cells` (by column key) in the row; repaint the row, or the table if a column
        may have to widen or narrow."""
        key = RowKey(row_key)
        row = self.get_row_index(key)
        shown = self._data[key]
        resized = {
            column: cell
            for column, cell in cells.items()
            if cell.cell_len != _width(shown.get(ColumnKey(column)))
        }
        for column, cell in cells.items():
            if column in resized:
                self.update_cell(key, column, cell, update_width=True)
            else:
                shown[ColumnKey(column)] = cell
        if len(resized) < len(cells):
            self._update_count += 1  # the table's line caches are keyed by it
            self.refresh_row(row)


def _width(cell: object) -> int | None:
    return cell.cell_len if isinstance(cell, Text) else None
