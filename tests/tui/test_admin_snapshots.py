"""Snapshots of the admin views and dialogs at 80x24 and 200x50, from fixed rows
(tests/tui/fakes_admin.py). Update: pytest tests/tui --snapshot-update, then look at them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.actor import Actor
from tests.tui.fakes import ALICE
from tests.tui.fakes_admin import admin_app
from tests.tui.test_snapshots import Size, SnapCompare, press, run


@pytest.fixture(params=[(80, 24), (200, 50)], ids=["80x24", "200x50"])
def size(request: pytest.FixtureRequest) -> Size:
    value: Size = request.param
    return value


def test_admin_users(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(admin_app(), terminal_size=size, run_before=run(press("down", "space")))


def test_admin_users_filtered(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(admin_app(), terminal_size=size, run_before=run(press("slash", "d")))


def test_admin_projects(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"projects", "enter"))
    )


def test_admin_plans(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"plans", "enter"))
    )


def test_admin_deploys(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"deploys", "enter"))
    )


def test_admin_billing(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"billing", "enter"))
    )


def test_admin_system(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"system", "enter"))
    )


def test_admin_help(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(admin_app(), terminal_size=size, run_before=run(press("question_mark")))


def test_admin_delete_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"projects", "enter"), press("ctrl+d")),
    )


def test_admin_users_as_an_operator(snap_compare: SnapCompare, size: Size) -> None:
    operator = Actor.for_staff(replace(ALICE, username="olga", role="operator"))
    assert snap_compare(admin_app(operator=operator), terminal_size=size, run_before=run())


def test_admin_audit(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(), terminal_size=size, run_before=run(press("colon", *"audit", "enter"))
    )


def test_admin_audit_filtered(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(
            press("colon", *"audit", "enter"),
            press("slash", *"outcome", "colon", *"refused"),
        ),
    )


def test_admin_new_plan_form(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"plans", "enter"), press("n")),
    )


# :billing's revenue per month and invoices (one invoice open), and a project's build log.
def test_admin_revenue(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"billing", "enter"), press("m")),
    )


def test_admin_invoices(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"billing", "enter"), press("i")),
    )


def test_admin_invoice_open(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"billing", "enter"), press("i"), press("down", "enter")),
    )


def test_admin_project_build_log(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        admin_app(),
        terminal_size=size,
        run_before=run(press("colon", *"projects", "enter"), press("down", "down", "b")),
    )
