"""Base classes for ghst screens and dialogs: typed access to the app, one error path.

Every core call runs in a worker (`@work(exclusive=True, exit_on_error=False)`); when one fails,
`on_worker_state_changed` hands the exception to `handle_error`, which by default calls the app's
`show_error` (a notification). Forms override `handle_error` to show the errors a user can fix
next to the fields instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState

from core.actor import Actor
from core.identity.accounts import User
from core.services import Services
from tui.frugal_screen import FrugalScreen
from tui.visitor import Visitor

if TYPE_CHECKING:
    from tui.app import GhstApp

ResultType = TypeVar("ResultType")


def ghst_app(node: DOMNode) -> GhstApp:
    return cast("GhstApp", node.app)


def signed_in_user(node: DOMNode) -> User:
    user = ghst_app(node).visitor.user
    if user is None:  # screens that need a user are only reachable after signing in
        raise RuntimeError("this screen needs a signed-in user")
    return user


def failed_worker_error(event: Worker.StateChanged) -> BaseException | None:
    if event.state is WorkerState.ERROR:
        return event.worker.error
    return None


class GhstScreen(FrugalScreen[ResultType]):
    """A full screen of the dashboard."""

    # A screen that loads what an event changed and draws it later says so here, and calls
    # `tui.watch.event_drawn` once drawn (the process's ticks wait until then).
    DRAWS_CHANGES_AFTER_LOAD: ClassVar[bool] = False

    @property
    def ghst(self) -> GhstApp:
        return ghst_app(self)

    @property
    def panel(self) -> Services:
        return self.ghst.panel

    @property
    def visitor(self) -> Visitor:
        return self.ghst.visitor

    @property
    def user(self) -> User:
        return signed_in_user(self)

    @property
    def actor(self) -> Actor:
        """Who the services see acting: the signed-in user."""
        signed_in_user(self)  # screens that act are only reachable after signing in
        return self.visitor.actor

    def handle_error(self, error: BaseException) -> None:
        self.ghst.show_error(error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        error = failed_worker_error(event)
        if error is not None:
            self.handle_error(error)


class GhstModal(ModalScreen[ResultType], GhstScreen[ResultType]):
    """A dialog over the current screen: the same helpers as a full screen."""
