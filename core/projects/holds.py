"""Holds on a project: what a domain above projects (billing) may set to stop it from running.

The deploy queue and the uploads refuse work on a held project, and the worker shows the
page the hold asks for when it stops one. Projects know nothing of why: the holder attaches
a `Hold` when the panel is built (core.panel), so the layers keep pointing one way.
"""

from __future__ import annotations

from typing import Literal, Protocol

from core.db.pool import Connection
from core.errors import PanelError

# Which page nginx shows for a project that does not run: stopped by its owner (with the
# "free" badge for a free project), suspended (for non-payment), or held by the operators.
StoppedPage = Literal["stopped", "stopped-free", "suspended", "held"]


class Hold(Protocol):
    async def refuse(self, conn: Connection, project_id: int, what: str) -> None:
        """Raise a PanelError saying why `what` ("deploy", "start", "upload") is refused."""
        ...

    async def stopped_page(self, project_id: int) -> StoppedPage: ...


class Holds:
    """The holds attached to a panel's projects (none: nothing is ever held)."""

    def __init__(self) -> None:
        self._holds: list[Hold] = []

    def attach(self, hold: Hold) -> None:
        self._holds.append(hold)

    async def refuse(self, conn: Connection, project_id: int, what: str) -> None:
        for hold in self._holds:
            await hold.refuse(conn, project_id, what)

    async def held(self, conn: Connection, project_id: int) -> bool:
        """Whether any hold still refuses the project's start (one hold lifted while another
        holds: the project stays stopped)."""
        try:
            await self.refuse(conn, project_id, "start")
        except PanelError:
            return True
        return False

    async def stopped_page(self, project_id: int) -> StoppedPage:
        page: StoppedPage = "stopped"
        for hold in self._holds:
            found = await hold.stopped_page(project_id)
            if found == "held":  # the operators' hold says more than "top up"
                return found
            if found == "suspended" or (found != "stopped" and page != "suspended"):
                page = found
        return page
