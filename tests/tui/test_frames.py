"""What one change costs a screen: only the changed lines are drawn, table cells are drawn once
per process, and what reaches the terminal is what a whole new frame would show.

One event redraws a line or two on every screen watching a project (hundreds in one process):
these are the savings that let it reach them all in time (bench/events.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui.frugal_screen import FrugalScreen, bands, uncovered
from tui.widgets.rows_table import RowsTable

SIZE = (100, 30)
MIDDLE = 20  # boxes between the two lines that change


class Page(FrugalScreen[None]):
    """Like a project screen: a status line, boxes, a table, all in one container."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("status", id="top")
            for index in range(MIDDLE):
                with Vertical(classes="box"):
                    yield Static(f"box {index}", classes="middle")
            yield RowsTable(id="table")
            yield Static("detail", id="bottom")

    def on_mount(self) -> None:
        table = self.query_one(RowsTable)
        table.add_column("Id", key="id")
        table.add_column("State", key="state")


class PageApp(App[None]):
    CSS = ".box { height: 1; } #table { height: 3; }"

    def on_mount(self) -> None:
        self.push_screen(Page())


def show(table: RowsTable, key: str, *cells: str) -> None:
    table.show_rows([(key, cells, lambda: [Text(cell) for cell in cells])])


@pytest.fixture
def drawn_widgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Widget]]:
    """The widgets asked for lines, in order, from now on."""
    asked: list[Widget] = []
    render_lines = Widget.render_lines

    def counted(self: Widget, *args: Any, **kwargs: Any) -> list[Strip]:
        asked.append(self)
        return render_lines(self, *args, **kwargs)

    monkeypatch.setattr(Widget, "render_lines", counted)
    yield asked


def partial_frame(page: Page) -> dict[int, str]:
    """The next partial update: the text of each line it sends, by line."""
    update = page._compositor.render_partial_update()
    assert update is not None
    return {
        y: Strip.join(strip for strip in update.chops[y].values() if strip is not None).text
        for y in {y for y, _x1, _x2 in update.spans}
    }


def change(page: Page, *ids: str, text: str) -> None:
    widgets = {page.query_one(f"#{id}", Static) for id in ids}
    for widget in widgets:
        widget.update(text)
        widget.refresh()  # (without waiting for the update timer)
    page._compositor.update_widgets(set(widgets))


async def test_a_change_draws_only_the_widgets_on_its_lines(
    drawn_widgets: list[Widget],
) -> None:
    app = PageApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        page = app.screen
        assert isinstance(page, Page)
        drawn_widgets.clear()
        change(page, "top", "bottom", text="changed")
        partial_frame(page)
        middle = set(page.query(".middle").results())
        assert not middle & set(drawn_widgets)
        # (The same widgets are drawn when their lines change.)
        drawn_widgets.clear()
        page.query_one(".middle", Static).update("box changed")
        page.query_one(".middle", Static).refresh()
        page._compositor.update_widgets({page.query_one(".middle", Static)})
        partial_frame(page)
        assert middle & set(drawn_widgets)


async def test_a_partial_frame_shows_what_a_whole_frame_shows() -> None:
    app = PageApp()
    async with app.run_test(size=SIZE) as pilot:
        page = app.screen
        assert isinstance(page, Page)
        show(page.query_one(RowsTable), "7", "#7", "building")
        await pilot.pause()
        change(page, "top", "bottom", text="#7 failed: the build stopped")
        sent = partial_frame(page)
        whole = [strip.text for strip in page._compositor.render_strips()]
        assert len(sent) == 2
        for y, line in sent.items():
            assert line == whole[y]
            assert "#7 failed: the build stopped" in line


async def test_a_change_draws_no_container_hidden_behind_it(
    drawn_widgets: list[Widget],
) -> None:
    app = PageApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        page = app.screen
        assert isinstance(page, Page)
        middle = page.query(".middle").results(Static)
        box = next(iter(middle))
        drawn_widgets.clear()
        box.update("box changed")
        box.refresh()
        page._compositor.update_widgets({box})
        update = page._compositor.render_partial_update()
        assert update is not None
        # The box, the page's container and the screen behind it show nowhere it changed.
        assert drawn_widgets == [box]
        whole = [strip.text for strip in page._compositor.render_strips()]
        for y, x1, x2 in update.spans:
            sent = Strip.join(
                strip for x, strip in update.chops[y].items() if strip is not None and x < x2
            )
            assert sent.text == whole[y][x1:x2]
            assert "box changed" in sent.text


def test_what_a_widget_covers_is_left_out_of_the_places_to_draw() -> None:
    from textual.geometry import Region

    place = Region(0, 0, 10, 3)
    assert uncovered([place], Region(20, 0, 5, 5)) == [place]  # elsewhere
    assert uncovered([place], Region(0, 0, 10, 3)) == []
    left = uncovered([place], Region(2, 1, 3, 1))  # a hole in the middle
    assert sum(region.area for region in left) == place.area - 3
    assert all(not region.overlaps(Region(2, 1, 3, 1)) for region in left)
    assert all(place.contains_region(region) for region in left)


def test_bands_join_the_changes_whose_lines_meet() -> None:
    from textual.geometry import Region

    top, next_line, far = Region(0, 0, 10, 1), Region(5, 1, 10, 1), Region(0, 9, 3, 2)
    assert bands([far, top, next_line]) == [Region(0, 0, 15, 2), far]


async def test_a_cell_drawn_for_one_session_is_not_drawn_again_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[int, int]] = []
    render_cell = DataTable._render_cell

    def counted(self: DataTable[Any], row: int, column: int, *args: Any) -> Any:
        drawn.append((row, column))
        return render_cell(self, row, column, *args)

    monkeypatch.setattr(DataTable, "_render_cell", counted)
    screens: list[str] = []
    for state in ("a state only this test shows", "a state only this test shows", "other"):
        app = PageApp()
        async with app.run_test(size=SIZE) as pilot:
            page = app.screen
            show(page.query_one(RowsTable), "7", "#7", state)
            await pilot.pause()
            screens.append("\n".join(strip.text for strip in page._compositor.render_strips()))
        if len(screens) == 2:
            assert drawn == []  # the second session drew no cell: the first one's were taken
        drawn.clear()
    assert screens[0] == screens[1]
    # Another text in the same place (another tenant's deployment) is drawn for itself.
    assert "other" in screens[2]
    assert "a state only this test shows" not in screens[2]
