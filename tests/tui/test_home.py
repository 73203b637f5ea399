"""Home against the real PostgreSQL: the account facts, logging out, logging out everywhere."""

from __future__ import annotations

from textual.widgets import Static

from core.panel import Panel
from tests.actors import acting
from tests.tui.fakes import key_line
from tests.tui.helpers import REMOTE_ADDR, SIZE, settle, sign_up
from tui.app import GhstApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.home import HomeScreen
from tui.screens.keys import KeysScreen
from tui.screens.password import PasswordScreen
from tui.widgets.keybar import KeyBar


def text(app: GhstApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_home_shows_the_account(panel: Panel) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
    await panel.keys.add(acting(visitor.user.id), key_line("ci"))
    await panel.sessions.open(visitor.user.id, "key", "192.0.2.1")
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert text(app, "#signed-in") == "Signed in as alice"
        assert text(app, "#email") == "alice@example.com"
        assert text(app, "#member-since") == visitor.user.created_at.strftime("%Y-%m-%d")
        assert text(app, "#key-count") == "2 keys"
        assert text(app, "#session-count") == "2 active"
        header = app.screen.query_one("AppHeader")
        assert "alice" in str(header.query_one("#who", Static).render())


async def test_counts_refresh_when_coming_back(panel: Panel) -> None:
    visitor = await sign_up(panel, "alice")
    assert visitor.user is not None
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert text(app, "#key-count") == "none yet: press k to add one"
        assert text(app, "#session-count") == "1 active (this one)"
        await pilot.press("k")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        await panel.keys.add(acting(visitor.user.id), key_line("laptop"))
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert text(app, "#key-count") == "1 key"


async def test_keys_and_password_by_key_and_from_the_list(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PasswordScreen)
        await pilot.press("escape")
        await settle(pilot)
        # The "What next" list has the focus: arrows and Enter work too.
        assert app.focused is app.screen.query_one("#actions")
        await pilot.press("down", "enter")  # below Projects
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        await pilot.press("escape")
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PasswordScreen)


async def test_log_out_revokes_the_session_and_says_bye(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.session is not None
    jti = visitor.session.jti
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
    assert app.return_value == "Logged out. Bye!"
    assert await panel.sessions.ended([jti]) == {jti}


async def test_log_out_everywhere_asks_then_revokes_every_session(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.session is not None and visitor.user is not None
    others = [
        (await panel.sessions.open(visitor.user.id, "key", REMOTE_ADDR)).jti for _ in range(2)
    ]
    bob = await sign_up(panel, "bob")
    assert bob.session is not None
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        # Enter alone does not confirm something this big: Cancel has the focus.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert await panel.sessions.active_count(acting(visitor.user.id)) == 3

        await pilot.press("L")  # shift+L does the same as o
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
    assert app.return_value == "Logged out everywhere: 3 sessions closed. Bye!"
    everything = {visitor.session.jti, *others}
    assert await panel.sessions.ended(everything) == everything
    assert await panel.sessions.ended([bob.session.jti]) == set()  # other users untouched


async def test_quit_closes_the_connection_but_keeps_the_session(panel: Panel) -> None:
    visitor = await sign_up(panel)
    assert visitor.session is not None
    for key in ("q", "ctrl+q"):
        app = GhstApp(panel, visitor)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press(key)
            await pilot.pause()
        assert app.return_value == "Bye!"
    assert await panel.sessions.ended([visitor.session.jti]) == set()


async def test_the_first_farewell_wins(panel: Panel) -> None:
    """Logging out revokes the session; the server noticing that must not change the words."""
    visitor = await sign_up(panel)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        app.end_session("Your session was revoked.")
    assert app.return_value == "Logged out. Bye!"


async def test_end_session_from_the_server(panel: Panel) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.end_session("Your account was blocked.")
        await pilot.pause()
    assert app.return_value == "Your account was blocked."


async def test_the_key_bar_lists_the_bindings_and_a_click_on_a_key_presses_it(
    panel: Panel,
) -> None:
    app = GhstApp(panel, await sign_up(panel))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = str(app.screen.query_one(KeyBar).render())
        assert bar.split() == [
            *("j", "Projects", "k", "SSH", "keys", "p", "Password", "l", "Log", "out"),
            *("o", "Log", "out", "everywhere", "b", "Billing", "a", "Audit", "log", "^q", "Quit"),
        ]
        await pilot.click(KeyBar, offset=(bar.index(" k ") + 1, 0))
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        # The keys screen has its own bindings; "Remove key" is shown dimmed with no keys.
        assert "Remove key" in str(app.screen.query_one(KeyBar).render())
