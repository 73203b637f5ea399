"""The one output layer: data on stdout, notices on stderr, never an ANSI code.

Shared by the commands over SSH and the operators' `ghst` (its tables). `--json` prints one
object or array (a stream, like `logs -f --json`, one object per line); otherwise data is
plain text: aligned tables with a header, `KEY  value` pairs. Text a tenant wrote (names,
env values, log lines) passes `printable` so it cannot drive the reader's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from commands.streams import Output, TextSink

Cell = str | int | None


def printable(text: str) -> str:
    """`text` without control characters (escape sequences, carriage returns, bells)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in text)


def cell_text(value: Cell) -> str:
    return "-" if value is None else printable(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """An aligned table with a header line; the last column is not padded."""
    texts = [[cell_text(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in texts:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    lines = []
    for row in [list(headers), *texts]:
        padded = [text.ljust(widths[i]) for i, text in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def pairs(items: Sequence[tuple[str, Cell]]) -> str:
    """`Key:  value` lines, the values aligned."""
    width = max((len(key) for key, _ in items), default=0) + 1
    return "".join(f"{(key + ':').ljust(width)}  {cell_text(value)}\n" for key, value in items)


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_json(data: object) -> str:
    # ASCII only: a tenant's text arrives escaped, never as raw control characters.
    return json.dumps(data, default=_default, ensure_ascii=True, sort_keys=True)


class Printer:
    """What a command prints through: `data` or `json` on stdout, `notice` on stderr."""

    def __init__(self, streams: Output, *, json_mode: bool = False) -> None:
        self._streams = streams
        self.json_mode = json_mode

    @property
    def stdout(self) -> TextSink:
        return self._streams.stdout

    @property
    def notice_stream(self) -> TextSink:
        return self._streams.stderr

    def data(self, text: str) -> None:
        if text:
            self._streams.stdout.write(text if text.endswith("\n") else text + "\n")

    def line(self, text: str) -> None:
        """One line of tenant text (a log line) on stdout."""
        self._streams.stdout.write(printable(text) + "\n")

    def json(self, data: object) -> None:
        self._streams.stdout.write(to_json(data) + "\n")

    def notice(self, text: str) -> None:
        """For the person (progress, what was done): stderr, so pipes get data only."""
        self._streams.stderr.write(printable(text) + "\n")

    def result(self, data: object, text: str) -> None:
        """`data` as JSON with --json, else `text`."""
        if self.json_mode:
            self.json(data)
        else:
            self.data(text)

    def records(
        self,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[tuple[str, str]],
        empty: str = "",
    ) -> None:
        """A list: a JSON array of the records, or a table of `columns` (header, key)."""
        if self.json_mode:
            self.json(list(records))
            return
        if not records:
            if empty:
                self.notice(empty)
            return
        rows = [[_cell(record.get(key)) for _, key in columns] for record in records]
        self.data(table([header for header, _ in columns], rows))

    async def drain(self) -> None:
        await self._streams.drain()


def _cell(value: object) -> Cell:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple | frozenset | set):
        return ",".join(str(item) for item in value)
    return str(value)
