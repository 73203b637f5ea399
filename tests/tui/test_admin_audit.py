"""`:audit` driven by Pilot: the `/` words narrow the entries, pages, live updates and their
pause, and operators read it as admins do (users never reach it: see test_admin.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from core.actor import Actor
from core.events import Event
from tests.tui.fakes import ALICE
from tests.tui.fakes_admin import AUDIT, FakeAdmin, admin_app, audit_row
from tests.tui.helpers import record_notifications, settle
from tui.admin.audit import AdminAuditScreen
from tui.admin.help import AdminHelp
from tui.widgets.lines_table import LinesTable

SIZE = (120, 30)
OLGA = replace(ALICE, id=2, username="olga", role="operator")


def keys_of(pilot: Pilot[Any]) -> list[str]:
    return list(pilot.app.screen.query_one("#rows", LinesTable).keys)


def status(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#status", Static).render())


async def open_audit(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("colon", *"audit", "enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AdminAuditScreen)


async def type_filter(pilot: Pilot[Any], words: str) -> list[str]:
    keys = ["space" if c == " " else "colon" if c == ":" else c for c in words]
    await pilot.press("escape", "slash", *["backspace"] * 40, *keys, "enter")
    await settle(pilot)
    return keys_of(pilot)


async def test_audit_lists_every_entry_newest_first_and_filters_by_words() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_audit(pilot)
        assert keys_of(pilot) == ["6", "5", "4", "3", "2", "1"]
        assert await type_filter(pilot, "outcome:refused") == ["5"]
        assert await type_filter(pilot, "actor:dave") == ["3", "2"]
        assert await type_filter(pilot, "actor:dave outcome:failed") == ["3"]
        assert await type_filter(pilot, "action:project") == ["5", "1"]
        assert await type_filter(pilot, "target:shop") == ["4", "1"]
        assert await type_filter(pilot, "logi") == ["3", "2"]  # free text: first letters
        assert "filter /logi" in status(pilot)


async def test_a_bad_filter_word_is_explained_on_the_status_line() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await open_audit(pilot)
        assert await type_filter(pilot, "since:yesterday") == []
        assert "since: is a number and s, m, h or d" in status(pilot)
        assert await type_filter(pilot, "outcome:maybe") == []
        assert "An outcome is one of ok, refused, failed." in status(pilot)
        assert notes == []  # not one notification per keystroke
        assert await type_filter(pilot, "outcome:failed") == ["3"]
        assert "outcome is one of" not in status(pilot)


async def test_audit_pages_by_the_last_id_shown() -> None:
    admin = FakeAdmin(audit_rows=[audit_row(i, "bob", "deploy", "shop") for i in range(120, 0, -1)])
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_audit(pilot)
        assert keys_of(pilot)[0] == "120" and len(keys_of(pilot)) == 50
        await pilot.press("ctrl+f", "ctrl+f")
        await settle(pilot)
        assert keys_of(pilot) == [str(i) for i in range(20, 0, -1)]
        assert "page 3: 20 rows" in status(pilot)
        await pilot.press("ctrl+b")
        await settle(pilot)
        assert keys_of(pilot)[0] == "70"


async def test_new_entries_show_live_unless_paused() -> None:
    admin = FakeAdmin()
    app = admin_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await open_audit(pilot)
        hub = app.panel.events
        await pilot.press("p")
        assert "PAUSED" in status(pilot)
        admin.audit_rows.insert(0, audit_row(7, "bob", "login"))
        hub.deliver(Event("audit", user_id=2))
        await pilot.pause(0.1)
        await settle(pilot)
        assert "7" not in keys_of(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert keys_of(pilot)[0] == "7"
        admin.audit_rows.insert(0, audit_row(8, "carol", "login"))
        hub.deliver(Event("audit", user_id=3))
        await pilot.pause(0.1)
        await settle(pilot)
        assert keys_of(pilot)[0] == "8"


async def test_an_operator_reads_the_audit_log() -> None:
    app = admin_app(operator=Actor.for_staff(OLGA))
    async with app.run_test(size=SIZE) as pilot:
        await open_audit(pilot)
        assert keys_of(pilot) == [str(e.id) for e in AUDIT]


async def test_audit_is_in_the_jump_list_and_help() -> None:
    app = admin_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_audit(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, AdminHelp)
        text = str(app.screen.query_one("#keys", Static).render())
        assert "billing audit system" in text
