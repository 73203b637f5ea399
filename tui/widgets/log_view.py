"""A log view that takes text at any rate and draws it at most every `interval` seconds.

A chatty app can print thousands of lines a second, and every dashboard session runs in one
process and one event loop: drawing each line as it comes would take time from every other
user's session. `ThrottledLog` only appends incoming lines to a buffer (O(1) each, bounded to
the `max_lines` the view keeps, since older ones would scroll off anyway) and writes the
buffer to the view in one go, `interval` seconds after the first line waiting (a one-shot
timer: a quiet log wakes nothing). `writes` counts those writes, for tests and benches.

Text is cleaned on the way in: ANSI escape sequences and other control characters are dropped
and very long lines are cut, so an app's output cannot drive the user's terminal or swamp the
layout.
"""

from __future__ import annotations

import re
from collections import deque

from textual.geometry import Size
from textual.timer import Timer
from textual.widgets import Log

DEFAULT_MAX_LINES = 5000
DEFAULT_INTERVAL = 0.1
MAX_LINE_CHARACTERS = 2000
# CSI (colours, cursor moves), OSC (titles, clipboard) and other two-character escapes.
ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(line: str) -> str:
    """One line as the view shows it: no escape sequences, no control characters, not huge."""
    line = CONTROLS.sub("", ESCAPES.sub("", line))
    if len(line) > MAX_LINE_CHARACTERS:
        line = line[: MAX_LINE_CHARACTERS - 1] + "…"
    return line


class ThrottledLog(Log):
    DEFAULT_CSS = """
    ThrottledLog {
        background: $surface;
        overflow: auto;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
    }
    """

    def __init__(
        self,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        interval: float = DEFAULT_INTERVAL,
        id: str | None = None,
    ) -> None:
        # Log counts the empty line after the last newline as one of its `max_lines`.
        super().__init__(max_lines=max_lines + 1, auto_scroll=True, id=id)
        self.interval = interval
        self._pending: deque[str] = deque(maxlen=max_lines)
        self._partial = ""  # text after the last newline of `push_text`, not shown yet
        self._timer: Timer | None = None
        self.writes = 0  # times the buffer was written to the view
        self.received = 0  # lines taken in, shown or not

    def on_mount(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        """Write what is waiting within `interval` (one timer at a time, none when idle)."""
        if self._timer is None and self._pending and self.is_mounted:
            self._timer = self.set_timer(self.interval, self._flush_due)

    def _flush_due(self) -> None:
        self._timer = None
        self.flush()

    @property
    def pending(self) -> int:
        """Lines waiting for the next write."""
        return len(self._pending)

    def push_line(self, line: str) -> None:
        """Add one line (a trailing newline is optional; inner newlines split it)."""
        if line.endswith("\n"):
            line = line[:-1]
        for part in line.split("\n"):
            self._pending.append(clean_line(part))
            self.received += 1
        self._schedule()

    def push_text(self, text: str) -> None:
        """Add a chunk of text cut anywhere, e.g. the next part of a build log."""
        if not text:
            return
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_LINE_CHARACTERS:  # a line without end: show what came
            parts.append(self._partial)
            self._partial = ""
        for part in parts:
            self._pending.append(clean_line(part))
            self.received += 1
        self._schedule()

    def end_text(self) -> None:
        """The text is complete: its last line counts even without a newline."""
        if self._partial:
            self._pending.append(clean_line(self._partial))
            self.received += 1
            self._partial = ""
        self.flush()

    def flush(self) -> None:
        """Write what is buffered to the view in one write (the timer calls this)."""
        if not self._pending:
            return
        data = "\n".join(self._pending) + "\n"
        self._pending.clear()
        self.writes += 1
        self.write(data, scroll_end=False)
        # Log.write sizes the view before it drops the lines over `max_lines`; and the first
        # writes may bring in a scrollbar that changes the layout: follow once it is settled.
        self.virtual_size = Size(self.virtual_size.width, self.line_count)
        if self.auto_scroll:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            self.call_after_refresh(self._follow)

    def _follow(self) -> None:
        if self.auto_scroll and not self.is_vertical_scroll_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def toggle_follow(self) -> bool:
        """Stop or resume scrolling to new lines; returns whether the view now follows."""
        self.auto_scroll = not self.auto_scroll
        if self.auto_scroll:
            self.scroll_end(animate=False)
        return self.auto_scroll

    def reset(self) -> None:
        self._pending.clear()
        self._partial = ""
        self.clear()
