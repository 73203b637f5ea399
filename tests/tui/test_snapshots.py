"""Snapshots of every screen and dialog at 80x24 (the smallest terminal they are made for) and
200x50, drawn from fixed data so they never change by themselves.

`snap_compare` runs each app in an event loop of its own, so these use the small fake panel of
tests/tui/fakes.py; what the screens do is tested against the real services elsewhere.
Update after a deliberate change of the look: pytest tests/tui --snapshot-update, then look at
the SVGs in tests/tui/__snapshots__ before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from tests.tui.fakes import (
    ALICE_KEYS,
    REMOTE_ADDR,
    SHOP_DEPLOYMENTS,
    SHOP_HISTORY,
    fake_app,
    project,
    public_key,
    signed_in_visitor,
)
from tests.tui.helpers import settle
from tui.visitor import Visitor

SnapCompare = Callable[..., bool]
Size = tuple[int, int]
Steps = Callable[[Pilot[Any]], Awaitable[None]]


async def steady(pilot: Pilot[Any]) -> None:
    """Let the workers finish and stop cursors blinking, so each frame is the same."""
    await settle(pilot)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    for area in pilot.app.screen.query(TextArea):
        area.cursor_blink = False
    await pilot.pause()


def run(*steps: Steps) -> Steps:
    async def run_before(pilot: Pilot[Any]) -> None:
        await steady(pilot)
        for step in steps:
            await step(pilot)
            await steady(pilot)

    return run_before


def press(*keys: str) -> Steps:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*keys)

    return step


def set_values(**values: str) -> Steps:
    async def step(pilot: Pilot[Any]) -> None:
        for field, value in values.items():
            pilot.app.screen.query_one(f"#{field.replace('_', '-')}", Input).value = value

    return step


def guest_with_key() -> Visitor:
    return Visitor(REMOTE_ADDR, "alice", presented_key=public_key("laptop"))


@pytest.fixture(params=[(80, 24), (200, 50)], ids=["80x24", "200x50"])
def size(request: pytest.FixtureRequest) -> Size:
    """Every snapshot is taken in both terminal sizes."""
    value: Size = request.param
    return value


def test_sign_up(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(fake_app(guest_with_key()), terminal_size=size, run_before=run())


def test_sign_up_with_a_mistake(snap_compare: SnapCompare, size: Size) -> None:
    mistake = set_values(
        email="alice@example.com", password="correct horse", password_confirm="correct hose"
    )
    assert snap_compare(
        fake_app(guest_with_key()), terminal_size=size, run_before=run(mistake, press("enter"))
    )


def test_log_in_with_a_wrong_password(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(Visitor(REMOTE_ADDR, "alice")),
        terminal_size=size,
        run_before=run(press("ctrl+l"), set_values(password="not it at all"), press("enter")),
    )


def test_home(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS), terminal_size=size, run_before=run()
    )


def test_log_out_everywhere_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS), terminal_size=size, run_before=run(press("o"))
    )


def test_ssh_keys(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("k"), press("down")),
    )


def test_ssh_keys_empty(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), []), terminal_size=size, run_before=run(press("k"))
    )


def test_add_key_with_an_invalid_line(snap_compare: SnapCompare, size: Size) -> None:
    async def paste(pilot: Pilot[Any]) -> None:
        pilot.app.screen.query_one("#key", TextArea).insert("ssh-ed25519 AAAA!!notbase64 me@box")

    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("k"), press("a"), paste, press("enter")),
    )


def test_remove_the_last_key_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS[:1]),
        terminal_size=size,
        run_before=run(press("k"), press("d")),
    )


def test_change_password(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("p"), set_values(current="hunter2hunter2")),
    )


def test_projects(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("down")),
    )


def test_projects_empty(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS, projects=[]),
        terminal_size=size,
        run_before=run(press("j")),
    )


def test_project_with_a_ready_and_a_refused_version(snap_compare: SnapCompare, size: Size) -> None:
    """The refused upload selected: its whole reason under the table."""
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("down", "down", "enter"), press("down")),
    )


def test_new_project_with_a_bad_name(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("n"), set_values(name="My Shop"), press("enter")),
    )


def test_new_project_when_the_free_plan_is_taken(snap_compare: SnapCompare, size: Size) -> None:
    """The free plan shown but disabled, with the reason; the cheapest paid one chosen."""
    app = fake_app(signed_in_visitor(), ALICE_KEYS)
    app.panel.subscriptions.has_free = True  # type: ignore[attr-defined]
    assert snap_compare(
        app, terminal_size=size, run_before=run(press("j"), press("n"), set_values(name="blog"))
    )


def test_delete_project_dialog_with_a_wrong_name(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(
            press("j"), press("down", "down", "d"), set_values(confirmation="shpo"), press("enter")
        ),
    )


def test_project_running_with_a_failed_deployment_selected(
    snap_compare: SnapCompare, size: Size
) -> None:
    """The live deployment in the status line; the failed attempt's whole error under the table."""
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("down", "down", "enter"), press("tab")),
    )


def test_build_log_of_a_failed_deployment(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("down", "down", "enter"), press("tab"), press("l")),
    )


def test_env_vars_masked(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(press("j"), press("down", "down", "enter"), press("e")),
    )


def test_app_port_dialog_with_a_bad_port(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(
            press("j"),
            press("down", "down", "enter"),
            press("e"),
            press("p"),
            set_values(port="70000"),
            press("enter"),
        ),
    )


# The shop project open (running #4, the latest attempt #5 failed), its uploads table focused.
OPEN_SHOP = (press("j"), press("down", "down", "enter"))


def test_live_logs(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("g")),
    )


def test_stop_project_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("s")),
    )


def test_delete_version_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("delete")),
    )


def test_roll_back_dialog(snap_compare: SnapCompare, size: Size) -> None:
    """#3 went live before #4 replaced it: b offers to go back to it."""
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("tab"), press("down", "down"), press("b")),
    )


def test_set_env_var_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("e"), press("a"), set_values(name="API_TOKEN")),
    )


def test_change_env_var_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("e"), press("down"), press("enter")),
    )


def test_unset_env_var_dialog(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS),
        terminal_size=size,
        run_before=run(*OPEN_SHOP, press("e"), press("u")),
    )


def test_project_with_a_40_character_name(snap_compare: SnapCompare, size: Size) -> None:
    """The longest name a project can have: at 80 columns its address goes under it."""
    name = "a-project-name-of-the-longest-length-40c"
    app = fake_app(
        signed_in_visitor(),
        ALICE_KEYS,
        projects=[project(name, 2, SHOP_HISTORY[0].created_at, 1)],
        archives={name: SHOP_HISTORY},
        deployments={name: SHOP_DEPLOYMENTS},
    )
    assert snap_compare(app, terminal_size=size, run_before=run(press("j"), press("enter")))


def test_audit_log(snap_compare: SnapCompare, size: Size) -> None:
    assert snap_compare(
        fake_app(signed_in_visitor(), ALICE_KEYS), terminal_size=size, run_before=run(press("a"))
    )
