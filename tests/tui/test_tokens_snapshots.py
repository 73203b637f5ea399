"""Snapshots of the access tokens screen and its dialogs at 80x24 and 200x50, from the fixed
tokens of tests/tui/fakes_tokens.py (see test_snapshots.py)."""

from __future__ import annotations

from tests.tui.fakes import ALICE_KEYS, fake_app, signed_in_visitor
from tests.tui.test_snapshots import Size, SnapCompare, press, run, set_values, size
from tui.app import GhstApp

__all__ = ["size"]  # the fixture taking every snapshot at both sizes


def alice() -> GhstApp:
    return fake_app(signed_in_visitor(), ALICE_KEYS)


def test_tokens(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(alice(), terminal_size=size, run_before=run(press("t")))


def test_new_token_with_an_unknown_scope(snap_compare: SnapCompare, size: Size) -> None:
    mistake = set_values(name="deploy-bot", scopes="read,root", projects="shop")
    assert snap_compare(
        alice(), terminal_size=size, run_before=run(press("t"), press("c"), mistake, press("enter"))
    )


def test_new_token_secret_shown_once(snap_compare: SnapCompare, size: Size) -> None:
    fields = set_values(name="deploy-bot", scopes="deploy", projects="shop")
    assert snap_compare(
        alice(), terminal_size=size, run_before=run(press("t"), press("c"), fields, press("enter"))
    )


def test_revoke_token_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(alice(), terminal_size=size, run_before=run(press("t"), press("d")))
