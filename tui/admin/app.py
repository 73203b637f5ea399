"""`ghst admin`: the admin views in the host's terminal, acting as the system (whoever runs
`ghst` on the host operates the panel, as every `ghst` command does)."""

from __future__ import annotations

from pathlib import Path

from textual.screen import Screen

from core.actor import Actor
from core.services import Services
from tui import app as dashboard
from tui.app import GhstApp
from tui.visitor import Visitor

LOCAL_ADDR = "local"


class AdminApp(GhstApp):
    TITLE = "ghst admin"
    # The dashboard's own stylesheet (a relative CSS_PATH would be looked for beside this file).
    CSS_PATH = str(Path(dashboard.__file__).with_name("app.tcss"))

    def __init__(self, panel: Services, *, operator: Actor | None = None) -> None:
        visitor = Visitor(LOCAL_ADDR, "admin", operator=operator or Actor.system("admin"))
        super().__init__(panel, visitor)

    def first_screen(self) -> Screen[None]:
        from tui.admin.users import AdminUsersScreen

        return AdminUsersScreen()
