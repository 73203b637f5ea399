"""Snapshots of the billing screen, its dialogs and home's low-balance banner, at 80x24 and
200x50, from the fixed data of tests/tui/fakes_billing.py (see test_snapshots.py)."""

from __future__ import annotations

from typing import cast

from tests.tui.fakes import ALICE_KEYS, fake_app, signed_in_visitor
from tests.tui.fakes_billing import FakeSubscriptions
from tests.tui.test_snapshots import Size, SnapCompare, press, run, size
from tui.app import GhstApp

__all__ = ["size"]  # the fixture taking every snapshot at both sizes


def alice(balance: int | None = None) -> GhstApp:
    app = fake_app(signed_in_visitor(), ALICE_KEYS)
    if balance is not None:
        cast(FakeSubscriptions, app.panel.subscriptions).balance = balance
    return app


def test_home_with_one_day_of_balance_left(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(alice(balance=6_000), terminal_size=size, run_before=run())


def test_billing(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(alice(), terminal_size=size, run_before=run(press("b")))


def test_billing_plan_change_with_its_price(snap_compare: SnapCompare, size: Size) -> None:
    # The cursor starts on landing-page (free): c opens its plans, down twice is Host-1.
    assert snap_compare(
        alice(), terminal_size=size, run_before=run(press("b"), press("c"), press("down", "down"))
    )


def test_billing_invoice(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(alice(), terminal_size=size, run_before=run(press("b"), press("i")))
