"""Snapshots of the billing screen, its dialogs and home's low-balance banner, at 80x24 and
200x50, from the fixed data of tests/tui/fakes_billing.py (see test_snapshots.py)."""

from __future__ import annotations

from typing import cast

from tests.tui.fakes import ALICE_KEYS, fake_app, signed_in_visitor
from tests.tui.fakes_billing import ALICE_USAGE, FakePromised, FakeSubscriptions
from tests.tui.test_snapshots import Size, SnapCompare, press, run, size
from tui.app import GhstApp

__all__ = ["size"]  # the fixture taking every snapshot at both sizes


def alice(balance: int | None = None) -> GhstApp:
    app = fake_app(signed_in_visitor(), ALICE_KEYS)
    subscriptions = cast(FakeSubscriptions, app.panel.subscriptions)
    subscriptions.usages = dict(ALICE_USAGE)
    if balance is not None:
        subscriptions.balance = balance
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


def test_billing_promised_payment(snap_compare: SnapCompare, size: Size) -> None:
    # What it grants (3 days of spend), the rule, and how many are left; y takes it.
    assert snap_compare(alice(), terminal_size=size, run_before=run(press("b"), press("p")))


def test_billing_promised_payment_refused(snap_compare: SnapCompare, size: Size) -> None:
    app = alice()
    promised = cast(FakePromised, app.panel.promised)
    promised.taken = 2
    promised.refusal = (
        "A promised payment can be taken at most 2 times in 28 days, and you have used them:"
        " top up your balance."
    )
    assert snap_compare(app, terminal_size=size, run_before=run(press("b"), press("p", "y")))
