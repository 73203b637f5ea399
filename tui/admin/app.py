"""`ghst admin`: the admin views in the host's terminal, acting as the system (whoever runs
`ghst` on the host operates the panel, as every `ghst` command does)."""

from __future__ import annotations

from core.actor import Actor
from core.services import Services
from tui.app import GhstApp
from tui.visitor import Visitor

LOCAL_ADDR = "local"


class AdminApp(GhstApp):
    TITLE = "ghst admin"

    def __init__(self, panel: Services, *, operator: Actor | None = None) -> None:
        visitor = Visitor(LOCAL_ADDR, "admin", operator=operator or Actor.system("admin"))
        super().__init__(panel, visitor)

    def on_mount(self) -> None:
        from tui.admin.users import AdminUsersScreen

        self.push_screen(AdminUsersScreen())
