"""An Input whose keystrokes repaint its line, not lay out the whole screen.

Textual's Input sets its virtual size to its text's width on every change of its value, and a
new virtual size lays the screen out again: each keystroke of the admin views' `/` filter laid
out and redrew every widget of the screen, as much work as the rows the filter brings. When the
input's size comes from the stylesheet and its text fits it (nothing to scroll sideways),
nothing outside it moves: the input is repainted instead.
"""

from __future__ import annotations

from typing import Self

from textual.geometry import Region
from textual.widgets import Input

from tui.widgets.redraw import fits_as_laid_out


class PromptInput(Input):
    _typing = False

    def _watch_value(self, value: str) -> None:
        self._typing = True
        try:
            super()._watch_value(value)
        finally:
            self._typing = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if layout and self._typing and fits_as_laid_out(self):
            layout = False  # the new virtual size moves nothing: a repaint of the input
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
