"""The terminal sizes where screens change their layout (80x24 is the smallest they are made for).

Each screen gets the class "-narrow" below `WIDE_FROM` columns ("-wide" from there on) and
"-short" below `TALL_FROM` rows ("-tall" from there on); the screens' stylesheets tighten on them.
"""

from __future__ import annotations

WIDE_FROM = 96
TALL_FROM = 30
HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL_FROM, "-tall")]
