"""The SSH keys screen and the add-key dialog against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from textual.widgets import DataTable, Input, Static

from core.panel import Panel
from tests.actors import acting
from tests.tui.fakes import key_line, public_key
from tests.tui.helpers import SIZE, click, error_text, record_notifications, settle, sign_up
from tui.app import GhstApp
from tui.screens.add_key import AddKeyDialog, KeyLineArea
from tui.screens.confirm import ConfirmDialog
from tui.screens.home import HomeScreen
from tui.screens.keys import KeysScreen


async def open_keys(app: GhstApp) -> None:
    await app.push_screen(KeysScreen())


def table_rows(app: GhstApp) -> list[list[str]]:
    table = app.screen.query_one("#keys", DataTable)
    return [[str(cell) for cell in table.get_row_at(row)] for row in range(table.row_count)]


async def test_the_table_lists_the_keys(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
    await panel.keys.add(acting(visitor.user.id), key_line("workstation"), "old box")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("k")
        await settle(pilot)
        rows = table_rows(app)
        assert [row[:2] for row in rows] == [
            ["alice@laptop\ned25519", public_key("laptop").fingerprint],
            ["old box\nrsa", public_key("workstation").fingerprint],
        ]
        assert [row[3] for row in rows] == ["never", "never"]
        assert app.focused is app.screen.query_one("#keys", DataTable)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


async def test_no_keys_shows_how_to_add_one(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        assert "No SSH keys yet. Press a" in str(app.screen.query_one("#empty", Static).render())
        assert not app.screen.query_one("#keys", DataTable).display
        await pilot.press("d")  # nothing to remove: the binding is disabled
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
    assert notes == []


async def test_add_a_key(panel: Panel, new_key: Callable[..., str]) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    line = new_key("me@laptop")
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, AddKeyDialog)
        assert app.focused is app.screen.query_one("#key", KeyLineArea)
        app.screen.query_one("#key", KeyLineArea).insert(line)
        await pilot.press("tab", *"laptop", "enter")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        assert [row[0] for row in table_rows(app)] == ["laptop\ned25519"]
    keys = await panel.keys.list(acting(visitor.user.id))
    assert [(k.name, k.algorithm) for k in keys] == [("laptop", "ssh-ed25519")]
    assert [n.title for n in notes] == ["Key added"]


async def test_enter_in_the_key_box_submits_and_the_comment_names_the_key(
    panel: Panel, new_key: Callable[..., str]
) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#key", KeyLineArea).insert(new_key("work-laptop"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
    assert [k.name for k in await panel.keys.list(acting(visitor.user.id))] == ["work-laptop"]


async def test_an_invalid_line_is_explained_and_kept(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        area = app.screen.query_one("#key", KeyLineArea)
        for line, message in [
            ("ssh-ed25519 !!!not-base64 me@host", "The key data is not valid base64."),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----",
                "That is a private key. Never share it: paste the .pub file instead.",
            ),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "Unsupported key type 'ssh-dss'"),
        ]:
            area.load_text(line)
            area.focus()
            await pilot.press("tab", *"my key")
            await click(pilot, "#add")
            await settle(pilot)
            assert isinstance(app.screen, AddKeyDialog)
            assert error_text(pilot).startswith(message)
            assert area.text == line
            assert app.screen.query_one("#name", Input).value == "my key"
            app.screen.query_one("#name", Input).value = ""
        area.load_text("")
        await settle(pilot)  # the dialog lays out again once the long message above is gone
        await click(pilot, "#add")
        await pilot.pause()
        assert error_text(pilot).startswith("Paste a public key line")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
    assert await panel.keys.list(acting(visitor.user.id)) == []


async def test_a_key_another_account_owns_is_a_conflict(panel: Panel) -> None:
    bob = await sign_up(panel, "bob")
    assert bob.user is not None
    await panel.keys.add(acting(bob.user.id), key_line("laptop"))
    alice = await sign_up(panel, "alice")
    assert alice.user is not None
    app = GhstApp(panel, alice)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#key", KeyLineArea).insert(key_line("laptop"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AddKeyDialog)
        fingerprint = public_key("laptop").fingerprint
        assert error_text(pilot) == f"The key {fingerprint} is already registered to an account."
    assert await panel.keys.list(acting(alice.user.id)) == []
    assert len(await panel.keys.list(acting(bob.user.id))) == 1


async def test_remove_a_key_after_confirming(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
    await panel.keys.add(acting(visitor.user.id), key_line("desktop"))
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("down", "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == "Remove the key alice@desktop?"
        assert "last SSH key" not in app.screen.message
        await pilot.press("n")  # changed my mind
        await pilot.pause()
        assert len(table_rows(app)) == 2

        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        assert [row[0] for row in table_rows(app)] == ["alice@laptop\ned25519"]
    assert [k.name for k in await panel.keys.list(acting(visitor.user.id))] == ["alice@laptop"]


async def test_removing_the_last_key_warns_first(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert "This is your last SSH key" in app.screen.message
        await click(pilot, "#confirm")
        await settle(pilot)
        assert not app.screen.query_one("#keys", DataTable).display
    assert await panel.keys.list(acting(visitor.user.id)) == []


async def test_a_key_removed_elsewhere_is_a_not_found_notification(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.user is not None
    key = await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_keys(app)
        await settle(pilot)
        await panel.keys.remove(acting(visitor.user.id), key.id)  # e.g. from another session
        await pilot.press("d", "y")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
    assert [(n.title, n.message, n.severity) for n in notes] == [
        ("Not found", "No such key on your account.", "error")
    ]
