"""Log in with a username and password; optionally attach the key the visitor connected with."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Static

from core.errors import AuthenticationError, ThrottledError, ValidationError
from tui.onboarding import attach_key, attach_key_choice, is_valid_username
from tui.screens.base import GhstScreen
from tui.widgets.form import ErrorLine, Field
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar


class LoginScreen(GhstScreen[None]):
    TITLE = "Log in"
    CSS_PATH = "login.tcss"
    AUTO_FOCUS = None  # see on_mount
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Submit", show=False),
        Binding("ctrl+n", "to_signup", "Sign up instead"),
    ]

    def __init__(self, username: str | None = None, notice: str | None = None) -> None:
        super().__init__()
        self._username = username
        self._notice = notice
        self._busy = False

    def compose(self) -> ComposeResult:
        visitor = self.visitor
        username = self._username
        if username is None:
            username = visitor.ssh_username if is_valid_username(visitor.ssh_username) else ""
        key = visitor.presented_key
        yield AppHeader("Log in")
        with VerticalScroll(classes="page", can_focus=False), Vertical(classes="card"):
            yield Static("Log in", id="title", classes="card-title")
            yield Static(
                self._notice or "Welcome back. Enter logs you in.",
                id="notice",
                classes="card-subtitle",
                markup=False,
            )
            yield Field("Username", Input(username, id="username", max_length=32))
            yield Field("Password", Input(id="password", password=True, max_length=1024))
            if key is not None:
                yield from attach_key_choice(key)
            yield ErrorLine()
            with Horizontal(classes="actions"):
                yield Button("Log in", id="login", variant="primary")
                yield Button("New here? Sign up", id="to-signup")
        yield KeyBar()

    def on_mount(self) -> None:
        username = self.query_one("#username", Input)
        (self.query_one("#password", Input) if username.value else username).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#login")
    def action_submit(self) -> None:
        if self._busy:
            return
        error = self.query_one(ErrorLine)
        username = self.query_one("#username", Input)
        password = self.query_one("#password", Input)
        if not username.value.strip():
            error.set_message("Enter your username.")
            username.focus()
            return
        if not password.value:
            error.set_message("Enter your password.")
            password.focus()
            return
        error.clear()
        attach = any(box.value for box in self.query("#attach-key").results(Checkbox))
        self._set_busy(True)
        self.log_in(username.value, password.value, attach)

    @on(Button.Pressed, "#to-signup")
    def action_to_signup(self) -> None:
        from tui.screens.signup import SignUpScreen

        self.app.switch_screen(SignUpScreen())

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        button = self.query_one("#login", Button)
        button.disabled = busy
        button.label = "Logging in…" if busy else "Log in"

    @work(exclusive=True, exit_on_error=False, group="submit")
    async def log_in(self, username: str, password: str, attach: bool) -> None:
        from tui.screens.home import HomeScreen

        panel, visitor = self.panel, self.visitor
        try:
            user = await panel.accounts.authenticate(
                username, password, visitor.remote_addr, origin="dashboard"
            )
            key = visitor.presented_key
            if attach and key is not None:
                problem = await attach_key(
                    panel, user, key, visitor.remote_addr, request_id=visitor.request_id
                )
                if problem is None:
                    visitor.presented_key = None
                    self.notify(f"Key {key.fingerprint} added to your account.", title="Key added")
                else:
                    self.notify(problem, title="Key not attached", severity="warning")
            session = await panel.sessions.open(
                user.id, "password", visitor.remote_addr, actor=visitor.acting(user)
            )
        except Exception:  # (a cancelled worker means the screen is going away: leave it)
            self._set_busy(False)
            raise
        visitor.user, visitor.session = user, session
        self.app.switch_screen(HomeScreen())

    def handle_error(self, error: BaseException) -> None:
        if isinstance(error, AuthenticationError | ThrottledError | ValidationError):
            self.query_one(ErrorLine).set_message(error.message)
            password = self.query_one("#password", Input)
            password.value = ""
            password.focus()
        else:
            super().handle_error(error)
