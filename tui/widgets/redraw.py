"""Redraw only what changed: an event wakes every screen that watches a project, most of them
to show the same lines as before.

`Static.update` lays the whole screen out again even for the same text, and setting a border
title repaints its widget: with hundreds of screens on one process, that is most of the work of
an event. These skip both when what is shown stays the same.
"""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static


def same(shown: object, new: str | Content) -> bool:
    """`Content` compares its text only: a colour that changed counts here too."""
    if isinstance(shown, Content) and isinstance(new, Content):
        return shown.plain == new.plain and list(shown.spans) == list(new.spans)
    return type(shown) is type(new) and shown == new


def sized_by_style(widget: Widget) -> bool:
    """True when the widget's size does not depend on its content (a fixed height, a width
    that is not `auto`): new content then needs a repaint of it, not a layout of the screen."""
    height, width = widget.styles.height, widget.styles.width
    return height is not None and not height.is_auto and (width is None or not width.is_auto)


def fits_as_laid_out(widget: Widget) -> bool:
    """True when a new virtual size of `widget` (its content grew or shrank) moves nothing: its
    size comes from the stylesheet, and the content still fits it without a scrollbar. A
    repaint of the widget then does what a layout of the whole screen would."""
    if not sized_by_style(widget) or not widget.container_size:
        return False
    if widget.show_vertical_scrollbar or widget.show_horizontal_scrollbar:
        return False
    width, height = widget.container_size
    return widget.virtual_size.width <= width and widget.virtual_size.height <= height


def update_static(widget: Static, content: str | Content) -> None:
    if not same(widget.content, content):
        widget.update(content, layout=not sized_by_style(widget))


def set_border_title(widget: Widget, title: str) -> None:
    if widget.border_title != title:
        widget.border_title = title
