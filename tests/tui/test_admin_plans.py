"""`:plans` driven by Pilot: a new plan version from the form (never an edit), retiring a code
after typing it, and operators kept from both."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.pilot import Pilot

from core.actor import Actor
from tests.tui.fakes import ALICE
from tests.tui.fakes_admin import FakeAdmin, admin_app
from tests.tui.helpers import record_notifications, settle
from tui.admin.plans import AdminPlansScreen
from tui.admin.prompt import PromptDialog
from tui.widgets.lines_table import LinesTable

SIZE = (120, 30)
OLGA = replace(ALICE, id=2, username="olga", role="operator")
NAMED = {"-": "minus", ".": "full_stop", " ": "space"}


def keys_of(pilot: Pilot[Any]) -> list[str]:
    return list(pilot.app.screen.query_one("#rows", LinesTable).keys)


async def open_plans(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("colon", *"plans", "enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AdminPlansScreen)


async def fill(pilot: Pilot[Any], *values: str) -> None:
    """Each value typed into the dialog's next field, enter after each (the last applies)."""
    for value in values:
        await pilot.press(*[NAMED.get(c, c) for c in value], "enter")
    await settle(pilot)


async def test_an_admin_creates_a_new_version_from_the_form() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_plans(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await fill(pilot, "host-1", "Host-1", "1200", "2.5", "8192", "5120", "", "12")
        assert isinstance(app.screen, AdminPlansScreen)
        assert admin.done == [("plan.create", "host-1", "v3 1024 pids")]
        assert keys_of(pilot)[0] == "host-1 v3"
        created = admin.plan_rows[0].plan
        assert (created.price_kopecks, created.cpu_millicores, created.max_services) == (
            120_000,
            2500,
            12,
        )


async def test_a_value_that_is_not_a_number_is_explained_and_nothing_is_made() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await open_plans(pilot)
        await pilot.press("n")
        await settle(pilot)
        await fill(pilot, "tiny", "Tiny", "0", "lots", "256", "256", "", "1")
        assert admin.done == []
        assert "CPU is a number of cores" in notes[-1].message


async def test_a_plan_is_retired_only_after_its_code_is_typed() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_plans(pilot)
        await pilot.press("down")  # host-0
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await fill(pilot, "host-1")  # not the code under the cursor
        assert admin.done == []
        await pilot.press("x")
        await settle(pilot)
        await fill(pilot, "host-0")
        assert admin.done == [("plan.retire", "host-0", "")]
        assert [p.plan.retired for p in admin.plan_rows if p.plan.code == "host-0"] == [True]


async def test_an_operator_neither_creates_nor_retires_plans() -> None:
    admin = FakeAdmin()
    app = admin_app(admin, operator=Actor.for_staff(OLGA))
    async with app.run_test(size=SIZE) as pilot:
        await open_plans(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, AdminPlansScreen)  # no form opened
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, AdminPlansScreen)
        assert admin.done == []
