"""The key bar at the bottom of every screen: the bindings in force, drawn as one line of text.

Textual's Footer mounts a widget per key and mounts them all again whenever the bindings change
(focus moves, a screen appears): a good part of the time to a session's first frame, paid again
on every screen. This draws the same line from one widget; a click on a key presses it.

When the keys do not fit the bar's width it degrades in steps, and never hides the way out:
1. the keys are drawn closer together (one space between them instead of two);
2. keys are left out until the rest fits: first the dimmed ones (they cannot act now), then
   those the screen lists in `KEY_BAR_DROP_ORDER` (least important first), then the others
   from the right. `escape` and the app's own keys (`^q Quit`) are always kept.
A key left out still works; the bar only has no room to name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static


@dataclass(frozen=True)
class BarKey:
    action: str
    key: str  # as shown: "esc", "^q", "del"
    description: str
    press: str  # the key a click presses
    enabled: bool  # False: drawn dimmed (the screen's check_action said None)
    pinned: bool  # always shown: escape and the app's own keys


def draw_keys(keys: Sequence[BarKey], tight: bool = False) -> Content:
    """ " k Description  k Description " (tight: " k Description k Description")."""
    items: list[Content] = []
    for item in keys:
        dim = "" if item.enabled else "dim"
        key_style = f"{dim} @click=app.simulate_key({item.press!r})" if item.enabled else "dim"
        if tight:
            items.append(
                Content.assemble((f" {item.key}", key_style), (f" {item.description}", dim))
            )
        else:
            items.append(
                Content.assemble((f" {item.key} ", key_style), (f"{item.description} ", dim))
            )
    return Content("").join(items)


def fit_keys(keys: Sequence[BarKey], width: int, drop_order: Sequence[str] = ()) -> Content:
    """The bar's line for `width` cells, degraded as the module docstring says."""
    line = draw_keys(keys)
    if line.cell_length <= width:
        return line
    shown = list(keys)
    # Who goes first: dimmed keys, then the screen's order, then the others from the right.
    ranked = [item for item in reversed(shown) if not item.enabled]
    ranked += [item for action in drop_order for item in shown if item.action == action]
    ranked += list(reversed(shown))
    victims = iter(item for item in ranked if not item.pinned)
    line = draw_keys(shown, tight=True)
    while line.cell_length > width:
        victim = next(victims, None)
        if victim is None:
            break  # the pinned keys alone are too wide: the bar's ellipsis cuts the end
        if victim in shown:
            shown.remove(victim)
            line = draw_keys(shown, tight=True)
    return line


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 100%;
        background: $footer-background;
        color: $footer-description-foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        /* The keys are the clickable part: drawn as links, in the footer's key colours. */
        link-color: $footer-key-foreground;
        link-style: bold;
        link-color-hover: $footer-key-foreground;
        link-background-hover: $block-hover-background;
        link-style-hover: bold;
    }
    """

    def __init__(self) -> None:
        super().__init__(markup=False)
        self._keys: list[BarKey] = []
        self._drawn_for: tuple[tuple[BarKey, ...], int] | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._show_bindings()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self, event: events.Resize) -> None:
        self._draw()

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self._show_bindings()

    def _show_bindings(self) -> None:
        keys: list[BarKey] = []
        shown: set[str] = set()
        for node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in shown:
                continue
            shown.add(binding.action)
            first_key = binding.key.split(",")[0]
            keys.append(
                BarKey(
                    action=binding.action,
                    key=self.app.get_key_display(binding),
                    description=binding.description,
                    press=first_key,
                    enabled=enabled,
                    pinned=node is self.app or first_key == "escape",
                )
            )
        self._keys = keys
        self._draw()

    def _draw(self) -> None:
        width = self.size.width or self.app.size.width  # (not laid out yet: the terminal's)
        drawn_for = (tuple(self._keys), width)
        if drawn_for == self._drawn_for:
            return
        self._drawn_for = drawn_for
        drop_order: Sequence[str] = getattr(self.screen, "KEY_BAR_DROP_ORDER", ())
        # One line across the bottom whatever it says: a repaint, not a layout of the screen.
        self.update(fit_keys(self._keys, width, drop_order), layout=False)
