"""A Screen that draws its first frame once: Textual's work on showing a screen, without repeats.

Showing a screen, Textual (8.2) styles, lays out and draws it more than once before and just
after its first frame. Measured on the home screen with bench/dashboard_cpu.py; each override
below says which repeat it removes:

- the size classes (tui.layout) come with the screen's first Resize, after its widgets were
  styled: they are set when the screen is made, so that Resize changes no class;
- the first ScreenResume restyles the screen and all its widgets, styled a moment before as
  they mounted, and repaints the whole screen after laying it out (which draws it all);
- the first layout sends the screen itself a Resize, which lays it out again at the same size;
- frames drawn during a batch (the app starts inside one, and pushes its first screen there)
  are thrown away by Textual after being drawn in full;
- widgets ask to be redrawn by messages: those sent before a frame that drew the whole screen
  were drawn by it, yet each marked its widget to draw again;
- once mounted, a new screen asks for a layout and a repaint: the layout draws it whole, then
  the repaint drew the same frame again;
- and on the way out, the focus leaving restyled widgets for a frame that is never drawn.

And a frame that changes a few lines draws only those lines (`BandCompositor`). Textual draws
every line of every widget whose container's area meets the rectangle around all the changes:
one changed line on a project screen drew all the widgets of the page, whole. Here each band
of changed lines is drawn apart, and of each widget only its lines in the band. And only the
widgets that show in the changed areas: Textual draws the widgets front to back and keeps, at
each place, what the first one drew; the containers behind a changed widget (the page, a
box, the screen itself) were drawn too, for places where nothing of them shows.

A dialog (a modal screen, drawn over the screen below it) keeps Textual's ways but the first.
These override private methods of Textual's Screen: the version is pinned (pyproject.toml), and
tests/tui's snapshots show that the screens still look the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from textual import events, messages
from textual._compositor import ChopsUpdate, Compositor
from textual._context import NoActiveAppError
from textual._time import get_time
from textual.geometry import Region, Size
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget

from tui.layout import breakpoint_classes

ResultType = TypeVar("ResultType")


def uncovered(regions: Iterable[Region], cover: Region) -> list[Region]:
    """What of `regions` lies outside `cover`."""
    left: list[Region] = []
    for region in regions:
        if not region.overlaps(cover):
            left.append(region)
            continue
        x, y, width, _height = region
        right, bottom = region.right, region.bottom
        inside = region.intersection(cover)
        if inside.y > y:  # above the cover
            left.append(Region(x, y, width, inside.y - y))
        if inside.bottom < bottom:  # below
            left.append(Region(x, inside.bottom, width, bottom - inside.bottom))
        if inside.x > x:  # beside, on the left
            left.append(Region(x, inside.y, inside.x - x, inside.height))
        if inside.right < right:  # beside, on the right
            left.append(Region(inside.right, inside.y, right - inside.right, inside.height))
    return left


def bands(regions: Iterable[Region]) -> list[Region]:
    """The rectangles around the regions whose lines overlap or touch, top to bottom."""
    merged: list[Region] = []
    for region in sorted(regions, key=lambda region: region.y):
        last = merged[-1] if merged else None
        if last is not None and region.y <= last.bottom:
            merged[-1] = last.union(region)
        else:
            merged.append(region)
    return merged


class BandCompositor(Compositor):
    """Textual's compositor, drawing a partial update band by band, and of each widget only
    the lines in the band (see the module's doc)."""

    # The changed areas of the band being drawn (None: draw every widget that meets it).
    _changed: list[Region] | None = None
    # False on a dialog's screen: Textual's ways (it is drawn over the screen below).
    skip_hidden = True

    def _get_renders(
        self, crop: Region | None = None
    ) -> Iterable[tuple[Region, Region, list[Strip]]]:
        if crop is None:
            yield from super()._get_renders(crop)
            return
        top, bottom = crop.y, crop.bottom
        # Front to back: what a widget draws over a changed place is what shows there.
        to_draw = self._changed
        for widget, (region, clip) in self.visible_widgets.items():
            x, y, width, height = region.intersection(clip)
            # Whole lines only: the strips are cut where widgets start and end.
            first, last = max(y, top), min(y + height, bottom)
            if width and first < last:
                shown = Region(x, first, width, last - first)
                if to_draw is not None:
                    if not any(shown.overlaps(place) for place in to_draw):
                        continue  # hidden there by the widgets drawn before it
                    to_draw = uncovered(to_draw, shown)
                lines = Region(x - region.x, first - region.y, width, last - first)
                yield region, shown, widget.render_lines(lines)
                if to_draw is not None and not to_draw:
                    return  # every changed place is drawn: the rest is behind

    def render_partial_update(self) -> ChopsUpdate | None:
        if not self._dirty_regions:
            return None
        screen_region = self.size.region
        update_regions = self._dirty_regions.copy()
        self._dirty_regions.clear()
        spans = list(self._regions_to_spans(update_regions))
        is_rendered_line = {y for y, _, _ in spans}.__contains__
        chops: list[Mapping[int, Strip]] = []
        for band in bands(update_regions):
            crop = band.intersection(screen_region)
            if not crop:
                continue
            if self.skip_hidden:
                self._changed = [
                    place for region in update_regions if (place := region.intersection(crop))
                ]
            try:
                drawn = self._render_chops(crop, is_rendered_line)
            finally:
                self._changed = None
            if not chops:
                chops = list(drawn)
            else:
                for y in crop.line_range:
                    chops[y] = drawn[y]
        if not chops:
            return None
        chop_ends = [cut_set[1:] for cut_set in self.cuts]
        return ChopsUpdate(chops, spans, chop_ends)


class FrugalScreen(Screen[ResultType]):
    def __init__(
        self, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name, id, classes)
        self._compositor = BandCompositor()
        self._preset_breakpoint_classes()
        self._shown_before = False
        # When the last frame that drew the whole screen began (monotonic, as message times).
        self._drawn_whole_at = float("-inf")

    def _preset_breakpoint_classes(self) -> None:
        """Give the screen now the size classes (tui.layout) its first Resize would give it.

        Textual styles a screen and its widgets as they mount, then the Resize that follows
        adds the size classes and styles the whole screen again: a second pass of CSS and
        layout on every screen shown. Set here, that Resize finds them already right.
        """
        try:
            app = self.app
        except NoActiveAppError:  # made outside a running app: the Resize sets them
            return
        if app.is_running:
            width, height = app.size
            self.update_classes(breakpoint_classes(width, height), update=False)

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        if self._shown_before or self.is_modal:
            return  # Textual's own handler (Screen's, after this one) restyles and repaints
        # The first show: Textual's handler without the work done twice. The screen and its
        # widgets were styled as they mounted (no restyle), and the layout that follows draws
        # the whole screen (no repaint of it all once more after that).
        self._shown_before = True
        event.prevent_default()
        app = self.app
        if app.SUSPENDED_SCREEN_CLASS:
            self.remove_class(app.SUSPENDED_SCREEN_CLASS)
        self.stack_updates += 1
        if app._notifications:  # else the toast rack stays hidden: no layout to hide it
            app._refresh_notifications()
        size = app.size
        self._update_auto_focus()
        if self.is_attached:
            if self._size != size:
                self._refresh_layout(size)
            else:
                self.refresh()

    def _screen_resized(self, size: Size) -> None:
        # A screen's first layout sends the screen itself a Resize: laying it out again for
        # the same size changes nothing.
        # (A layout asked for meanwhile is still done: the screen's update timer does it.)
        if self.is_modal or size != self._compositor.size:
            super()._screen_resized(size)

    def _compositor_refresh(self) -> None:
        app = self.app
        if self.is_modal:  # (known only once made: ModalScreen sets it after __init__)
            if isinstance(self._compositor, BandCompositor):
                self._compositor.skip_hidden = False
            super()._compositor_refresh()
            return
        if app._batch_count:
            # Textual would draw the frame and throw it away. What is dirty stays dirty, drawn
            # by the next refresh (for a new screen: the layout it asks for once mounted).
            return
        whole = self._compositor.size.region in self._compositor._dirty_regions
        started = get_time()
        super()._compositor_refresh()
        if whole and self is app.screen and not app.is_inline:
            self._drawn_whole_at = started

    def _refresh_layout(self, size: Size | None = None, scroll: bool = False) -> None:
        drawn = self._drawn_whole_at  # (never set on a modal screen)
        super()._refresh_layout(size, scroll)
        if self._drawn_whole_at != drawn:
            # Just drawn whole: a repaint of the whole screen asked for before (a new screen
            # asks for a layout and a repaint once mounted) would draw the same frame again.
            self._repaint_required = False

    def _update_focus_styles(
        self, focused: Widget | None = None, blurred: Widget | None = None
    ) -> None:
        # Leaving, the app takes the focus away as it removes the widgets: restyling them
        # for it was a third of what a session's exit cost, for a frame never drawn.
        if not self.app._exit:
            super()._update_focus_styles(focused, blurred)

    async def _on_update(self, message: messages.Update) -> None:
        # A widget asks to be redrawn by a message: those sent before a frame that drew the
        # whole screen were drawn by it. On a screen's first show the widgets' requests from
        # mounting arrive just after its first frame: each was a second drawing of that frame.
        if message.time < self._drawn_whole_at:
            message.stop()
            message.prevent_default()  # Screen's handler would mark the widget to draw again
