"""The key bar at the bottom of every screen: the bindings in force, drawn as one line of text.

Textual's Footer mounts a widget per key and mounts them all again whenever the bindings change
(focus moves, a screen appears): a good part of the time to a session's first frame, paid again
on every screen. This draws the same line from one widget; a click on a key presses it.
"""

from __future__ import annotations

from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static


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

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._show_bindings()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self._show_bindings()

    def _show_bindings(self) -> None:
        items: list[Content] = []
        shown: set[str] = set()
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in shown:
                continue
            shown.add(binding.action)
            key = self.app.get_key_display(binding)
            press = f"app.simulate_key({binding.key.split(',')[0]!r})"
            dim = "" if enabled else "dim"
            items.append(
                Content.assemble(
                    (f" {key} ", f"{dim} @click={press}" if enabled else "dim"),
                    (f"{binding.description} ", dim),
                )
            )
        self.update(Content("").join(items))
