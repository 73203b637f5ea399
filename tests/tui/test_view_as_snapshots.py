"""Snapshots of a user's dashboard viewed by an admin (`v` on `:users`), at 80x24 and 200x50:
the read-only banner over the user's own home. Update: pytest tests/tui --snapshot-update,
then look at them."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest

from core.panel import Panel
from tests.tui.fakes import ALICE, FakeAccounts, FakePanel
from tests.tui.fakes_admin import FakeAdmin, admin_app
from tests.tui.test_snapshots import Size, SnapCompare, press, run
from tui.admin.app import AdminApp

BOB = replace(ALICE, id=2, username="bob", email="bob@example.com")


@pytest.fixture(params=[(80, 24), (200, 50)], ids=["80x24", "200x50"])
def size(request: pytest.FixtureRequest) -> Size:
    value: Size = request.param
    return value


def test_viewing_as_bob(snap_compare: SnapCompare, size: Size) -> None:
    app = AdminApp(cast(Panel, FakePanel(accounts=FakeAccounts(BOB), admin=FakeAdmin())))
    assert snap_compare(app, terminal_size=size, run_before=run(press("down", "v")))


def test_a_users_details(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(admin_app(), terminal_size=size, run_before=run(press("down", "enter")))
