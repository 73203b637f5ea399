"""An OptionList that keeps its drawn options through a Resize that leaves its width alone.

Textual's OptionList forgets every option it drew on each Resize and draws them all again. A
screen shown for the first time is laid out and drawn, then each widget gets its first Resize:
the home screen's list was drawn twice for its first frame, a good part of what drawing that
screen costs. Its lines depend on its width only, so a Resize that keeps the width keeps them.
"""

from __future__ import annotations

from textual import events
from textual.widgets import OptionList


class SteadyOptionList(OptionList):
    # The width its lines were last made for (None: not made yet).
    _lines_width: int | None = None

    def _update_lines(self) -> None:
        # Only lines made from scratch are made for the current width: this is also called
        # for every render, and then only adds the options added since.
        from_scratch = not self._line_cache.lines
        super()._update_lines()
        if from_scratch and self._line_cache.lines:
            self._lines_width = self.scrollable_content_region.width

    def _on_resize(self, event: events.Resize) -> None:  # type: ignore[override]
        # Handlers run down the class hierarchy: this one first, then OptionList's (which
        # forgets the lines), unless stopped here.
        if self._lines_width == self.scrollable_content_region.width:
            event.prevent_default()
