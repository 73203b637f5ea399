"""The admin views driven by Pilot: k9s's keys (`:` `/` `?` esc space ctrl+d), actions on the
marked rows, paging, pausing live updates, and who sees the views at all."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Static

from core.actor import Actor
from core.events import Event
from core.panel import Panel
from tests.tui.fakes import ALICE, FakeAccounts, FakePanel, fake_app, signed_in_visitor
from tests.tui.fakes_admin import FakeAdmin, admin_app, user_row
from tests.tui.helpers import record_notifications, settle
from tui.admin.help import AdminHelp
from tui.admin.money import signed_kopecks
from tui.admin.projects import AdminProjectsScreen, parse_filter
from tui.admin.users import AdminUsersScreen
from tui.app import GhstApp
from tui.screens.home import HomeScreen
from tui.widgets.lines_table import LinesTable

SIZE = (120, 30)
OLGA = replace(ALICE, id=2, username="olga", role="operator")


def keys_of(pilot: Pilot[Any]) -> list[str]:
    return list(pilot.app.screen.query_one("#rows", LinesTable).keys)


def status(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#status", Static).render())


async def test_the_users_view_opens_filters_and_jumps() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        await pilot.press("slash", "b")
        await settle(pilot)
        assert keys_of(pilot) == ["bob"]
        assert "filter /b" in status(pilot)
        await pilot.press("escape", "escape")  # closes the prompt, then clears the filter
        await settle(pilot)
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        await pilot.press("colon", *"projects", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AdminProjectsScreen)
        assert keys_of(pilot) == ["blog", "docs", "shop", "wiki"]


async def test_an_unknown_view_is_named_and_nothing_moves() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await settle(pilot)
        await pilot.press("colon", *"nowhere", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)
        assert (
            notes[-1].message
            == "No view 'nowhere': try users, projects, deploys, plans, billing, audit or system."
        )


async def test_marked_users_are_blocked_after_confirming() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "space", "space")  # bob, carol
        assert "2 marked" in status(pilot)
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert admin.done == [("block", "bob", ""), ("block", "carol", "")]
        assert "marked" not in status(pilot)


async def test_a_credit_and_a_debit_carry_their_reason() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "c")
        await settle(pilot)
        app.screen.query_one("#value-0", Input).value = "-25.50"
        app.screen.query_one("#value-1", Input).value = "refund reversed"
        await pilot.press("enter")  # in the first field: on to the next
        await pilot.press("enter")
        await settle(pilot)
        assert admin.done == [("adjust", "bob", "-2550 refund reversed")]
    assert signed_kopecks("500") == 50_000
    assert signed_kopecks("+1.5") == 150


async def test_ctrl_d_deletes_only_after_the_name_is_typed() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await settle(pilot)
        await pilot.press("colon", *"projects", "enter")
        await settle(pilot)
        await pilot.press("down", "down", "ctrl+d")  # shop
        await settle(pilot)
        app.screen.query_one("#value-0", Input).value = "shopp"
        await pilot.press("enter")
        await settle(pilot)
        assert admin.done == []
        assert notes[-1].message.startswith("The names typed are not the projects")
        await pilot.press("ctrl+d")
        await settle(pilot)
        app.screen.query_one("#value-0", Input).value = "shop"
        await pilot.press("enter")
        await settle(pilot)
        assert admin.done == [("delete", "shop", "shop")]
        assert keys_of(pilot) == ["blog", "docs", "wiki"]


async def test_pages_move_forward_and_back() -> None:
    admin = FakeAdmin(users_rows=[user_row(f"user-{n:03d}") for n in range(1, 121)])
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert keys_of(pilot)[0] == "user-001" and len(keys_of(pilot)) == 50
        await pilot.press("ctrl+f")
        await settle(pilot)
        assert keys_of(pilot)[0] == "user-051"
        await pilot.press("ctrl+f")
        await settle(pilot)
        assert keys_of(pilot) == [f"user-{n:03d}" for n in range(101, 121)]
        assert "page 3: 20 rows" in status(pilot)
        await pilot.press("ctrl+f")  # the last page: stays
        await settle(pilot)
        assert "page 3" in status(pilot)
        await pilot.press("ctrl+b", "ctrl+b")
        await settle(pilot)
        assert keys_of(pilot)[0] == "user-001"


async def test_live_updates_show_changes_unless_paused() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        hub = app.panel.events
        await pilot.press("p")
        assert "PAUSED" in status(pilot)
        admin.users_rows.append(user_row("erin"))
        hub.deliver(Event("session", user_id=5))
        await pilot.pause(0.1)
        await settle(pilot)
        assert "erin" not in keys_of(pilot)
        await pilot.press("p")  # resumed: what changed meanwhile shows
        await settle(pilot)
        assert "erin" in keys_of(pilot)
        admin.users_rows.append(user_row("fred"))
        hub.deliver(Event("session", user_id=6))
        await pilot.pause(0.1)
        await settle(pilot)
        assert "fred" in keys_of(pilot)


async def test_help_lists_the_views_keys() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, AdminHelp)
        text = str(app.screen.query_one("#keys", Static).render())
        assert "Block" in text and "jump to a view" in text
        await pilot.press("escape")
        assert isinstance(app.screen, AdminUsersScreen)


async def test_an_operator_sees_the_changes_dimmed_and_cannot_make_them() -> None:
    admin = FakeAdmin()
    app = admin_app(admin, operator=Actor.for_staff(OLGA))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        await pilot.press("down", "u", "g")
        await settle(pilot)
        assert admin.done == []


async def test_only_staff_have_the_admin_key_on_their_dashboard() -> None:
    app = fake_app(signed_in_visitor(ALICE))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "admin" not in [b.action for _, b, _, _ in app.screen.active_bindings.values()]
        await pilot.press("colon")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)  # `:` opens nothing for a user

    # The home screen reads the account again: the fake accounts hold olga.
    panel = FakePanel(accounts=FakeAccounts(OLGA), admin=FakeAdmin())
    app = GhstApp(cast(Panel, panel), signed_in_visitor(OLGA))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await settle(pilot)
        assert isinstance(app.screen, AdminUsersScreen)
        assert keys_of(pilot) == ["alice", "bob", "carol", "dave"]
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


def test_project_filter_words() -> None:
    found, user = parse_filter("state:running sh plan:host-1 user:Bob")
    assert (found.name_prefix, found.state, found.plan_code, user) == (
        "sh",
        "running",
        "host-1",
        "bob",
    )


async def test_a_jump_typed_in_one_burst_lands_in_the_prompt() -> None:
    """`:projects` and Enter in one packet (fast typing over SSH): each key is read before
    the one before it was handled, so the prompt must have the focus at once."""
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.post_message(events.Key("colon", ":"))
        for character in "projects":
            app.post_message(events.Key(character, character))
        app.post_message(events.Key("enter", "\r"))
        await settle(pilot)
        assert isinstance(app.screen, AdminProjectsScreen)
        for character in "/state:failed":
            key = {"/": "slash", ":": "colon"}.get(character, character)
            app.post_message(events.Key(key, character))
        await settle(pilot)
        assert keys_of(pilot) == ["shop"]


async def test_deploys_are_cancelled_and_requeued_by_project_and_id() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"deploys", "enter")
        await settle(pilot)
        assert keys_of(pilot) == ["12", "11", "9"]
        await pilot.press("down", "x")
        await settle(pilot)
        await pilot.press("down", "R")
        await settle(pilot)
        assert admin.done == [("cancel", "shop", "11"), ("requeue", "docs", "9")]
        await pilot.press("colon", *"system", "enter")
        await settle(pilot)
        assert keys_of(pilot)[:2] == ["PostgreSQL", "Redis"]


async def test_billing_lists_accounts_below_zero_and_credits_them() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"billing", "enter")
        await settle(pilot)
        assert keys_of(pilot) == ["bob", "carol"]
        assert "today 12 345.00 RUB charged (412 entries)" in status(pilot)
        await pilot.press("c")
        await settle(pilot)
        app.screen.query_one("#value-0", Input).value = "30"
        app.screen.query_one("#value-1", Input).value = "top-up by phone"
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert admin.done == [("adjust", "bob", "3000 top-up by phone")]
        assert keys_of(pilot) == ["carol"]
