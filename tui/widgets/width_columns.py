"""A table's columns chosen by the terminal's width: the full set, or a narrow one below
`WIDE_FROM` columns that stacks two values in a cell (see tui/layout.py)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.layout import WIDE_FROM

Columns = tuple[tuple[str, str], ...]  # (label, key) pairs


class ColumnsByWidth:
    def __init__(self, wide: Columns, narrow: Columns) -> None:
        self._wide = wide
        self._narrow = narrow
        self.narrow: bool | None = None  # the layout shown; None: none yet

    def resized(self, width: int) -> bool:
        """Note the terminal's new width; True when the table must be laid out again."""
        narrow = width < WIDE_FROM
        if narrow == self.narrow:
            return False
        self.narrow = narrow
        return True

    def apply(self, table: DataTable[Text], width: int) -> None:
        """Clear the table and give it the columns for the layout (or for `width`, at first)."""
        if self.narrow is None:
            self.narrow = width < WIDE_FROM
        table.clear(columns=True)
        for label, key in self._narrow if self.narrow else self._wide:
            table.add_column(label, key=key)
