"""Two of Textual's render caches, keyed by what their results depend on instead of by instance.

Both are `functools.lru_cache` on a method, so each key holds the instance it was called on:

- `StylesCache.get_inner_outer`: one `StylesCache` per widget, each holding that widget's rendered
  lines. The 1024 entries kept about forty finished dashboards' widgets alive in the oldest
  garbage-collector generation, so every full collection walked them all: measured with
  bench/dashboard_cpu.py, 171k objects left after 30 dashboards and full collections taking
  14 ms at first, 115 ms by the 40th. The result depends only on the two colours.
- `ANSIToTruecolor.truecolor_style`: one filter per app, and a new one on every tinted render,
  each starting with nothing cached. The result depends only on the filter's terminal theme
  (a theme object shared by every app).

`share_render_caches` (once per process, from `sshd.driver.prepare_hosting`) puts a function with a
process-wide cache in their place; the values are Textual's own.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from rich.color import Color as RichColor
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from textual._styles_cache import StylesCache
from textual.color import Color
from textual.filter import ANSIToTruecolor
from textual.style import Style as TextualStyle

_inner_outer_of = StylesCache.get_inner_outer.__wrapped__
_truecolor_style_of = ANSIToTruecolor.truecolor_style.__wrapped__


@functools.lru_cache(maxsize=1024)
def _inner_outer(base_background: Color, background: Color) -> tuple[TextualStyle, TextualStyle]:
    result: tuple[TextualStyle, TextualStyle] = _inner_outer_of(None, base_background, background)
    return result


@functools.lru_cache(maxsize=4096)
def _truecolor_style(theme: TerminalTheme, style: Style, background: RichColor) -> Style:
    # Textual's method reads nothing of its filter but the theme.
    result: Style = _truecolor_style_of(SimpleNamespace(_terminal_theme=theme), style, background)
    return result


def _get_inner_outer(
    self: Any, base_background: Color, background: Color
) -> tuple[TextualStyle, TextualStyle]:
    return _inner_outer(base_background, background)


def _get_truecolor_style(self: ANSIToTruecolor, style: Style, background: RichColor) -> Style:
    return _truecolor_style(self._terminal_theme, style, background)


def share_render_caches() -> None:
    """Idempotent."""
    setattr(StylesCache, "get_inner_outer", _get_inner_outer)  # noqa: B010
    setattr(ANSIToTruecolor, "truecolor_style", _get_truecolor_style)  # noqa: B010
