"""The terminal sizes where screens change their layout (80x24 is the smallest they are made for).

Each screen gets the class "-narrow" below `WIDE_FROM` columns ("-wide" from there on) and
"-short" below `TALL_FROM` rows ("-tall" from there on); the screens' stylesheets tighten on them.
"""

from __future__ import annotations

WIDE_FROM = 96
TALL_FROM = 30
HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL_FROM, "-tall")]


def breakpoint_classes(width: int, height: int) -> dict[str, bool]:
    """Each breakpoint class, and whether a screen of this size has it (as Textual decides on
    a Resize: the highest breakpoint at or below the size, per direction)."""
    classes: dict[str, bool] = {}
    for size, breakpoints in ((width, HORIZONTAL_BREAKPOINTS), (height, VERTICAL_BREAKPOINTS)):
        reached = [name for start, name in sorted(breakpoints) if size >= start]
        for _, name in breakpoints:
            classes[name] = bool(reached) and name == reached[-1]
    return classes
