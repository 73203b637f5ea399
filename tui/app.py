"""GhstApp: one instance per SSH session (or per local `ghst admin` run).

Contract with the hosts (sshd and the admin CLI):
- construct with the composition root `Panel` and a `Visitor`;
- `visitor.session` is the live login session (None until sign-up / log-in succeeds); the SSH
  server watches its jti and calls `end_session(reason)` when it is revoked or the user blocked;
- `announce_shutdown(seconds)` shows every connected user that the server is going down;
- the app exits with `return_value` = a short farewell line the host prints after the screen.
"""

from __future__ import annotations

from textual.app import App

from core.panel import Panel
from tui.visitor import Visitor


class GhstApp(App[str]):
    TITLE = "ghst"

    def __init__(self, panel: Panel, visitor: Visitor) -> None:
        super().__init__()
        self.panel = panel
        self.visitor = visitor

    def end_session(self, reason: str) -> None:
        """The server ended this login (revoked, blocked, shutting down): leave with `reason`."""
        self.exit(reason)

    def announce_shutdown(self, seconds: float) -> None:
        self.notify(
            f"The panel is restarting; this session closes in {seconds:.0f} s.",
            title="Server shutting down",
            severity="warning",
            timeout=max(seconds, 3),
        )
