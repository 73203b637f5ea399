"""The env vars screen and its dialog against the real PostgreSQL and EnvService."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from core.panel import Panel
from core.projects.env_vars import EnvVar
from tests.actors import acting
from tests.tui.helpers import SIZE, click, error_text, fill, record_notifications, settle, sign_up
from tests.tui.test_deployments import key_bar, owner_of, rows, text, titles
from tui.app import GhstApp
from tui.screens.app_port import AppPortDialog
from tui.screens.confirm import ConfirmDialog
from tui.screens.env import EnvScreen
from tui.screens.home import HomeScreen
from tui.screens.set_env import SetEnvDialog

APPLIED = "Applied at the next deploy or restart."


async def test_add_change_and_unset_a_variable(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        assert "No variables yet. Press a to add one" in text(app, "#empty")
        assert text(app, "#env-note").startswith(APPLIED)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, SetEnvDialog)
        assert app.focused is app.screen.query_one("#name", Input)
        assert app.screen.query_one("#value", Input).password  # typed like a password
        await pilot.press(*"DEBUG", "enter")  # enter in the name goes on to the value
        assert app.focused is app.screen.query_one("#value", Input)
        await pilot.press("1", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert rows(app, "env") == [["DEBUG", "••••"]]
        assert app.screen.query_one("#env-box").border_title == "Variables · 1 of 100"

        await pilot.press("enter")  # change the selected one: its value typed again
        await pilot.pause()
        assert isinstance(app.screen, SetEnvDialog)
        assert app.screen.query_one("#name", Input).value == "DEBUG"
        assert app.screen.query_one("#value", Input).value == ""
        assert app.focused is app.screen.query_one("#value", Input)
        await pilot.press(*"verbose-logging", "enter")
        await settle(pilot)
        assert rows(app, "env") == [["DEBUG", "ve••••"]]

        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.screen.question_title == "Unset DEBUG?"
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert not app.screen.query_one("#env", DataTable).display
    assert titles(notes) == ["Variable set", "Variable set", "Variable unset"]
    assert all(note.message == f"DEBUG. {APPLIED}" for note in notes)
    assert await panel.env.list(acting(user_id), "shop") == []


async def test_values_are_masked_until_v(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await panel.env.set(acting(user_id), "shop", "SECRET_KEY", "abcdefghijklmnop")
    await panel.env.set(acting(user_id), "shop", "EMPTY", "")
    await panel.env.set(acting(user_id), "shop", "MULTI", "one\ntwo")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        masked = [["EMPTY", "(empty)"], ["MULTI", "••••"], ["SECRET_KEY", "ab••••"]]
        assert rows(app, "env") == masked
        assert "v Show values" in key_bar(app)
        await pilot.press("v")
        await pilot.pause()
        assert rows(app, "env") == [
            ["EMPTY", "(empty)"],
            ["MULTI", "one⏎two"],
            ["SECRET_KEY", "abcdefghijklmnop"],
        ]
        assert "v Hide values" in key_bar(app)
        await pilot.press("v")
        await pilot.pause()
        assert rows(app, "env") == masked


async def test_refused_names_and_values_are_explained_in_the_dialog(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        await fill(pilot, value="x")
        app.screen.query_one("#value", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert error_text(pilot) == "Enter a name for the variable."
        await fill(pilot, name="PORT")
        app.screen.query_one("#value", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SetEnvDialog)
        assert error_text(pilot).startswith("PORT is set by the panel itself")
        assert app.focused is app.screen.query_one("#name", Input)
        await fill(pilot, name="BIG", value="x" * (32 * 1024 + 1))
        await click(pilot, "#set")
        await settle(pilot)
        assert error_text(pilot).startswith("A value is at most 32 KiB")
        assert app.focused is app.screen.query_one("#value", Input)
        await fill(pilot, name="GHST_TOKEN", value="x")
        await click(pilot, "#set")
        await settle(pilot)
        assert "kept for the panel" in error_text(pilot)
        await fill(pilot, name="TOKEN")
        await click(pilot, "#set")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
    assert await panel.env.list(acting(user_id), "shop") == [EnvVar("TOKEN", "x")]


async def test_escape_cancels_the_dialog_and_nothing_is_set(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        await pilot.press("a", *"NAME", "escape")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
    assert await panel.env.list(acting(user_id), "shop") == []


async def test_another_users_project_has_no_env_screen(panel: Panel) -> None:
    _visitor, alice, _project = await owner_of(panel)
    await panel.env.set(acting(alice), "shop", "SECRET", "alice's secret")
    bob = await sign_up(panel, "bob")
    app = GhstApp(panel, bob)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert [(n.title, n.message) for n in notes] == [
        ("Not found", "You have no project named 'shop'.")
    ]


AUTOMATIC = "App port: automatic (the image's EXPOSE, else 8080)"


async def test_p_sets_the_app_port_and_an_empty_one_is_automatic(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        assert text(app, "#app-port").startswith(AUTOMATIC + "  p changes it")
        assert "p App port" in key_bar(app)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, AppPortDialog)
        port = app.screen.query_one("#port", Input)
        assert app.focused is port and port.value == ""
        assert APPLIED in text(app, ".dialog-hint")
        await pilot.press(*"8000", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert text(app, "#app-port").startswith("App port: 8000  p changes it")
        assert (await panel.projects.get(acting(user_id), "shop")).app_port == 8000

        await pilot.press("p")  # the dialog starts from the port set
        await pilot.pause()
        assert app.screen.query_one("#port", Input).value == "8000"
        await fill(pilot, port="")
        await click(pilot, "#save")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert text(app, "#app-port").startswith(AUTOMATIC)
    assert [(n.title, n.message) for n in notes] == [
        ("App port set", f"8000. {APPLIED}"),
        ("App port set", f"automatic (the image's EXPOSE, else 8080). {APPLIED}"),
    ]
    assert (await panel.projects.get(acting(user_id), "shop")).app_port is None


async def test_a_port_set_elsewhere_is_shown(panel: Panel) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await panel.projects.set_app_port(acting(user_id), "shop", 3000)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        assert text(app, "#app-port").startswith("App port: 3000  ")


async def test_a_refused_port_is_explained_in_the_dialog_and_esc_keeps_the_old_one(
    panel: Panel,
) -> None:
    visitor, user_id, _project = await owner_of(panel)
    await panel.projects.set_app_port(acting(user_id), "shop", 3000)
    app = GhstApp(panel, visitor)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(EnvScreen("shop"))
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause()
        for typed in ("0", "65536", "80a", "-1"):
            await fill(pilot, port=typed)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, AppPortDialog)
            assert error_text(pilot) == (
                "The app's port is a whole number from 1 to 65535, or empty to let the panel "
                "choose (the image's EXPOSE, else 8080)."
            )
            assert app.screen.query_one("#port", Input).value == typed  # kept, to fix it
            assert app.focused is app.screen.query_one("#port", Input)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, EnvScreen)
        assert text(app, "#app-port").startswith("App port: 3000  ")
    assert notes == []
    assert (await panel.projects.get(acting(user_id), "shop")).app_port == 3000


async def test_another_users_app_port_cannot_be_set(panel: Panel) -> None:
    _visitor, alice, _project = await owner_of(panel)
    await panel.projects.set_app_port(acting(alice), "shop", 3000)
    bob = await sign_up(panel, "bob")
    app = GhstApp(panel, bob)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(AppPortDialog("shop", None))
        await pilot.pause()
        await pilot.press(*"9000", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AppPortDialog)  # not saved: it stays open
        assert not app.screen.query_one("#save").disabled
    assert [(n.title, n.message) for n in notes] == [
        ("Not found", "You have no project named 'shop'.")
    ]
    assert (await panel.projects.get(acting(alice), "shop")).app_port == 3000
