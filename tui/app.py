"""GhstApp: one instance per SSH session (or per local `ghst admin` run).

Contract with the hosts (sshd and the admin CLI):
- construct with the domain services (`core.services.Services`: a `Panel` will do, the app
  keeps only its services) and a `Visitor`;
- `visitor.session` is the live login session (None until sign-up / log-in succeeds); the SSH
  server watches its jti and calls `end_session(reason)` when it is revoked or the user blocked;
- `announce_shutdown(seconds)` shows every connected user that the server is going down;
- the app exits with `return_value` = a short farewell line the host prints after the screen.

Errors: screens run every core call in a worker; a failed worker ends up in `show_error`, the one
place that turns a `PanelError` into a notification (its title and message) and any other
exception into a generic notification plus a log line. Forms show the errors the user can fix
inline instead (see `tui.screens.base.GhstScreen.handle_error`).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.screen import Screen

from core.actor import Actor
from core.errors import PanelError
from core.identity.accounts import User
from core.services import Services, ServiceSet
from tui import layout
from tui.stylesheet import SharedStylesheet
from tui.visitor import Visitor

log = logging.getLogger(__name__)

GENERIC_ERROR = "Something went wrong on our side. Please try again in a moment."
QUIT_FAREWELL = "Bye!"


class GhstApp(App[str]):
    TITLE = "ghst"
    CSS_PATH = "app.tcss"
    # The palette offers "save screenshot" (a file on the server) and theme switching: not for
    # hosted sessions.
    ENABLE_COMMAND_PALETTE = False
    # Classes every screen gets from the terminal's size, for its stylesheet (see tui.layout).
    HORIZONTAL_BREAKPOINTS = layout.HORIZONTAL_BREAKPOINTS
    VERTICAL_BREAKPOINTS = layout.VERTICAL_BREAKPOINTS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Close the connection."),
        # Priority, so focus moves when the app reads the key, not after the focused widget
        # has passed it back up: keys that arrive in one packet (fast typing over a slow link,
        # a pasted "user<Tab>password") would otherwise land in the field they were typed after.
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
    ]

    def __init__(self, panel: Services, visitor: Visitor) -> None:
        super().__init__()
        self.stylesheet = SharedStylesheet(variables=self.get_css_variables())
        # Only the services: no screen reaches the pool, Redis, Docker or nginx.
        self.panel: Services = ServiceSet.of(panel)
        self.visitor = visitor
        self._farewell: str | None = None
        # While an admin views a user's dashboard: how many screens were below it.
        self._viewing_depth = 0

    def on_mount(self) -> None:
        self.push_screen(self.first_screen())

    def first_screen(self) -> Screen[None]:
        # Imported here: the screens import this module for its types.
        from tui.screens.home import HomeScreen
        from tui.screens.signup import SignUpScreen

        return HomeScreen() if self.visitor.signed_in else SignUpScreen()

    def start_viewing(self, user: User, viewer: Actor) -> None:
        """Show `user`'s own dashboard to the admin at the keyboard, through `viewer` (core
        refuses its every change); the admin's screens stay below, `stop_viewing` returns."""
        if self.visitor.viewing is not None:
            return
        from tui.screens.home import HomeScreen

        self._viewing_depth = len(self.screen_stack)
        self.visitor = self.visitor.viewing_as(user, viewer)
        self.push_screen(HomeScreen())

    async def stop_viewing(self) -> None:
        """Back to the admin's screens, as the admin again."""
        admin = self.visitor.admin
        if admin is None:
            return
        while len(self.screen_stack) > self._viewing_depth:
            await self.pop_screen()
        self.visitor = admin

    def update_styles(self, node: DOMNode, animate: bool = True) -> None:
        # Once leaving, no frame is drawn any more: restyling what loses the focus as the
        # widgets go is work for nothing.
        if not self._exit:
            super().update_styles(node, animate)

    def _fatal_error(self) -> None:
        # Textual prints the traceback *with local variables* (a password being typed, a
        # token) to the process's stderr: on a server that is the operator's log. Log it
        # without locals instead; the SSH session shows the user a generic farewell.
        log.error("dashboard of %s crashed", self.visitor.ssh_username, exc_info=True)
        self._close_messages_no_wait()

    def leave(self, farewell: str) -> None:
        """Exit with `farewell` as the return value; the first farewell wins.

        Logging out revokes the session, so the SSH server may call `end_session` a moment
        later: the user should still read "Logged out", not "session revoked".
        """
        if self._farewell is not None:
            return
        self._farewell = farewell
        self.exit(farewell)

    async def action_quit(self) -> None:
        """Close the connection; the session stays valid until it expires or is logged out."""
        self.leave(QUIT_FAREWELL)

    def end_session(self, reason: str) -> None:
        """The server ended this login (revoked, blocked, shutting down): leave with `reason`."""
        self.leave(reason)

    def announce_shutdown(self, seconds: float) -> None:
        self.notify(
            f"The panel is restarting; this session closes in {seconds:.0f} s.",
            title="Server shutting down",
            severity="warning",
            timeout=max(seconds, 3),
        )

    def show_error(self, error: BaseException) -> None:
        """The one place errors reach the user: never a traceback, never a dead session."""
        if isinstance(error, PanelError):
            self.notify(error.message, title=error.title, severity="error", timeout=8)
            return
        log.error(
            "unexpected error in a dashboard session (user %s)",
            self.visitor.user.username if self.visitor.user else "-",
            exc_info=error,
        )
        self.notify(GENERIC_ERROR, title="Unexpected error", severity="error", timeout=8)
