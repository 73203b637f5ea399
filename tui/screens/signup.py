"""Sign up: create an account, optionally with the SSH key the visitor connected with."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Static

from core.errors import ConflictError, ThrottledError, ValidationError
from core.identity.accounts import validate_email, validate_password, validate_username
from tui.onboarding import (
    PASSWORD_RULE,
    USERNAME_RULE,
    attach_key,
    attach_key_choice,
    is_valid_username,
)
from tui.screens.base import GhstScreen
from tui.widgets.form import ErrorLine, Field
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar


class SignUpScreen(GhstScreen[None]):
    TITLE = "Sign up"
    CSS_PATH = "signup.tcss"
    AUTO_FOCUS = None  # focus goes to the first empty field, see on_mount
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Submit", show=False),
        Binding("ctrl+l", "to_login", "Log in instead"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def compose(self) -> ComposeResult:
        visitor = self.visitor
        username = visitor.ssh_username if is_valid_username(visitor.ssh_username) else ""
        key = visitor.presented_key
        yield AppHeader("Sign up")
        with VerticalScroll(classes="page", can_focus=False), Vertical(classes="card"):
            yield Static("Sign up", id="title", classes="card-title")
            yield Static(
                "Create your ghst account. Tab moves between fields; Enter creates it.",
                classes="card-subtitle",
            )
            yield Field(
                "Username",
                Input(username, id="username", placeholder="e.g. alice", max_length=32),
                hint=USERNAME_RULE,
            )
            yield Field("Email", Input(id="email", placeholder="you@example.com", max_length=254))
            yield Field(
                "Password",
                Input(id="password", password=True, max_length=1024),
                hint=PASSWORD_RULE,
            )
            yield Field(
                "Confirm password", Input(id="password-confirm", password=True, max_length=1024)
            )
            if key is not None:
                yield from attach_key_choice(key)
            yield ErrorLine()
            with Horizontal(classes="actions"):
                yield Button("Create account", id="create", variant="primary")
                yield Button("I have an account: Log in", id="to-login")
        yield KeyBar()

    def on_mount(self) -> None:
        for input_id in ("#username", "#email", "#password", "#password-confirm"):
            field = self.query_one(input_id, Input)
            if not field.value:
                field.focus()
                return
        self.query_one("#create", Button).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def action_submit(self) -> None:
        if self._busy:
            return
        error = self.query_one(ErrorLine)
        username = self.query_one("#username", Input).value.strip()
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        confirm = self.query_one("#password-confirm", Input).value
        # The same rules core applies, checked here first so the right field gets the focus.
        checks: tuple[tuple[str, Callable[[str], str], str], ...] = (
            ("#username", validate_username, username),
            ("#email", validate_email, email),
            ("#password", validate_password, password),
        )
        for input_id, check, value in checks:
            try:
                check(value)
            except ValidationError as invalid:
                error.set_message(invalid.message)
                self.query_one(input_id, Input).focus()
                return
        if password != confirm:
            error.set_message("The passwords do not match.")
            self.query_one("#password-confirm", Input).focus()
            return
        error.clear()
        self._set_busy(True)
        attach = any(box.value for box in self.query("#attach-key").results(Checkbox))
        self.create_account(username, email, password, attach)

    @on(Button.Pressed, "#to-login")
    def action_to_login(self) -> None:
        from tui.screens.login import LoginScreen

        username = self.query_one("#username", Input).value.strip()
        self.app.switch_screen(LoginScreen(username=username))

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#create", Button)
        button.disabled = busy
        button.label = "Creating account…" if busy else "Create account"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def create_account(self, username: str, email: str, password: str, attach: bool) -> None:
        from tui.screens.home import HomeScreen
        from tui.screens.login import LoginScreen

        panel, visitor = self.panel, self.visitor
        try:
            user = await panel.accounts.sign_up(
                username, email, password, remote_addr=visitor.remote_addr
            )
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        try:
            key = visitor.presented_key
            if attach and key is not None:
                problem = await attach_key(
                    panel, user, key, visitor.remote_addr, request_id=visitor.request_id
                )
                if problem is None:
                    visitor.presented_key = None
                else:
                    self.notify(problem, title="Key not attached", severity="warning")
            session = await panel.sessions.open(
                user.id, "signup", visitor.remote_addr, actor=visitor.acting(user)
            )
        except Exception as error:
            # The account exists: never leave the user on a form that now says "taken".
            self.ghst.show_error(error)
            self.app.switch_screen(
                LoginScreen(
                    username=user.username,
                    notice="Your account was created. Log in to continue.",
                )
            )
            return
        visitor.user, visitor.session = user, session
        self.app.switch_screen(HomeScreen())
        self.notify(f"Welcome to ghst, {user.username}!", title="Account created")

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, ValidationError | ConflictError | ThrottledError):
            self.query_one(ErrorLine).set_message(error.message)
        else:
            super().handle_error(error)
