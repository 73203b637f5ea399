"""Sign up against the real PostgreSQL: what lands in the database and what the user sees."""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import Checkbox, Input

from core.identity.keys import parse_public_key, public_key_from_blob
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.tui.fakes import key_line, public_key
from tests.tui.helpers import (
    PASSWORD,
    REMOTE_ADDR,
    SIZE,
    click,
    error_text,
    fill,
    guest,
    record_notifications,
    settle,
)
from tui.app import GhstApp
from tui.formatting import key_type
from tui.screens.home import HomeScreen
from tui.screens.login import LoginScreen
from tui.screens.signup import SignUpScreen


async def test_starts_on_sign_up_with_the_ssh_username_prefilled(panel: Panel) -> None:
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SignUpScreen)
        assert app.screen.query_one("#username", Input).value == "alice"
        # The first empty field has the focus, ready to type.
        assert app.focused is app.screen.query_one("#email", Input)
        assert app.screen.query_one("#password", Input).password
        assert app.screen.query_one("#password-confirm", Input).password
        # No key was presented: nothing to attach.
        assert not app.screen.query("#attach-key")
        await pilot.pause()


async def test_an_ssh_username_that_is_not_a_valid_username_is_not_prefilled(
    panel: Panel,
) -> None:
    app = GhstApp(panel, guest("Root_User"))
    async with app.run_test(size=SIZE):
        assert app.screen.query_one("#username", Input).value == ""
        assert app.focused is app.screen.query_one("#username", Input)


async def test_sign_up_attaches_the_presented_key_and_lands_on_home(panel: Panel) -> None:
    # As the SSH server sees it: the wire blob, without the comment the .pub file has.
    key = public_key_from_blob(public_key("laptop").blob)
    visitor = guest("alice", presented_key=key)
    app = GhstApp(panel, visitor)
    async with app.run_test(size=SIZE) as pilot:
        box = app.screen.query_one("#attach-key", Checkbox)
        assert box.value is True
        assert key.fingerprint in str(box.label)
        await fill(pilot, email="alice@example.com", password=PASSWORD, password_confirm=PASSWORD)
        await click(pilot, "#create")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "Signed in as alice" in str(app.screen.query_one("#signed-in").render())

    user = await panel.accounts.find_by_username("alice")
    assert user is not None and user.email == "alice@example.com"
    assert visitor.user == user
    assert visitor.session is not None and visitor.session.user_id == user.id
    assert visitor.session.auth_method == "signup"
    assert visitor.session.remote_addr == REMOTE_ADDR
    assert await panel.sessions.active_count(acting(user.id)) == 1
    keys = await panel.keys.list(acting(user.id))
    named = f"{key_type(key.algorithm)} from {REMOTE_ADDR}"
    assert [(k.fingerprint, k.name) for k in keys] == [(key.fingerprint, named)]
    assert visitor.presented_key is None  # attached: nothing left to offer
    assert await panel.accounts.authenticate("alice", PASSWORD, REMOTE_ADDR) == user


async def test_sign_up_without_the_key_when_unchecked(panel: Panel) -> None:
    app = GhstApp(panel, guest("bob", presented_key=public_key("desktop")))
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, email="bob@example.com", password=PASSWORD, password_confirm=PASSWORD)
        await click(pilot, "#attach-key")
        assert app.screen.query_one("#attach-key", Checkbox).value is False
        await click(pilot, "#create")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    user = await panel.accounts.find_by_username("bob")
    assert user is not None
    assert await panel.keys.list(acting(user.id)) == []


async def test_sign_up_by_keyboard_alone(panel: Panel) -> None:
    """Type, Tab between the fields, Enter submits."""
    app = GhstApp(panel, guest("Carol"))  # not a valid username: nothing prefilled
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"carol", "tab", *"carol@example.com", "tab")
        await pilot.press(*"0123456789ab", "tab", *"0123456789ab", "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert await panel.accounts.find_by_username("carol") is not None


async def test_keys_that_arrive_in_one_burst_land_in_the_right_fields(panel: Panel) -> None:
    """A fast typist on a slow link: the SSH server hands the app many keys at once."""
    app = GhstApp(panel, guest("carol"))
    burst = [*"carol@example.com", "tab", *"0123456789ab", "tab", *"0123456789ab"]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in burst:  # all posted before the app handles the first: no waiting between
            app.post_message(events.Key(key, "\t" if key == "tab" else key))
        await settle(pilot)
        values = [app.screen.query_one(f"#{name}", Input).value for name in FIELDS]
        assert values == ["carol", "carol@example.com", "0123456789ab", "0123456789ab"]


FIELDS = ("username", "email", "password", "password-confirm")

BAD_INPUT = [
    pytest.param(
        {"username": "1alice"},
        "A username uses lowercase letters, digits and hyphens, and starts with a letter.",
        "#username",
        id="username-starts-with-digit",
    ),
    pytest.param(
        {"username": "Alice"},
        "A username uses lowercase letters, digits and hyphens, and starts with a letter.",
        "#username",
        id="username-uppercase",
    ),
    pytest.param(
        {"username": "al"},
        "A username is 3 to 32 characters long.",
        "#username",
        id="username-too-short",
    ),
    pytest.param(
        {"email": "alice.example.com"},
        "'alice.example.com' is not a valid email address.",
        "#email",
        id="email",
    ),
    pytest.param(
        {"password": "short", "password_confirm": "short"},
        "A password has at least 10 characters.",
        "#password",
        id="short-password",
    ),
    pytest.param(
        {"password_confirm": PASSWORD + "!"},
        "The passwords do not match.",
        "#password-confirm",
        id="mismatch",
    ),
]


@pytest.mark.parametrize(("changes", "message", "focused"), BAD_INPUT)
async def test_bad_input_is_explained_and_the_form_stays(
    panel: Panel, changes: dict[str, str], message: str, focused: str
) -> None:
    app = GhstApp(panel, guest("nobody"))
    async with app.run_test(size=SIZE) as pilot:
        values = {
            "username": "alice",
            "email": "alice@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        }
        await fill(pilot, **(values | changes))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignUpScreen)
        assert error_text(pilot) == message
        assert app.focused is app.screen.query_one(focused, Input)
        # Nothing typed is lost.
        assert app.screen.query_one("#email", Input).value == (values | changes)["email"]
    assert await panel.accounts.list(SYSTEM) == []


async def test_core_validation_is_shown_inline_too(panel: Panel) -> None:
    """A rule only core knows (here: a password of spaces) still lands in #error."""
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        spaces = " " * 12
        await fill(pilot, email="alice@example.com", password=spaces, password_confirm=spaces)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignUpScreen)
        assert error_text(pilot) == "A password cannot be only spaces."


async def test_a_taken_username_or_email_is_a_conflict_shown_inline(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, email="other@example.com", password=PASSWORD, password_confirm=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignUpScreen)
        assert error_text(pilot) == "The username 'alice' is taken."

        await fill(pilot, username="alice2", email="alice@example.com")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignUpScreen)
        assert error_text(pilot) == "That email address is already used by an account."

        # Fixing it clears the error and goes through.
        await fill(pilot, email="alice2@example.com")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert len(await panel.accounts.list(SYSTEM)) == 2


async def test_a_presented_key_another_account_owns_does_not_block_sign_up(
    panel: Panel,
) -> None:
    owner = await panel.accounts.sign_up("owner", "owner@example.com", PASSWORD)
    await panel.keys.add(acting(owner.id), key_line("laptop"))
    app = GhstApp(panel, guest("alice", presented_key=parse_public_key(key_line("laptop"))))
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await fill(pilot, email="alice@example.com", password=PASSWORD, password_confirm=PASSWORD)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert any(n.title == "Key not attached" and n.severity == "warning" for n in notes)
    alice = await panel.accounts.find_by_username("alice")
    assert alice is not None and await panel.keys.list(acting(alice.id)) == []


async def test_switch_to_log_in_and_back(panel: Panel) -> None:
    app = GhstApp(panel, guest("alice"))
    async with app.run_test(size=SIZE) as pilot:
        await click(pilot, "#to-login")
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#username", Input).value == "alice"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SignUpScreen)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
