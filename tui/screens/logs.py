"""Logs of a project: the build log of one deployment, or the live app's runtime logs.

Build log: the deployment and the new part of its log are read when an event says it changed
or its log grew (two indexed queries; only text past the offset already shown is fetched;
events that come during a read make one more read); when it has finished the log is complete,
the screen stops listening and the line under the log says how it ended.

Runtime logs: `DeploymentService.runtime_logs` (the last `RUNTIME_TAIL` lines, then new ones)
is iterated in a worker; leaving the screen cancels the worker and closes the stream.

Both go through `ThrottledLog`, which draws at most every 100 ms and keeps the last 5000 lines,
so a chatty app costs other sessions nothing noticeable.

From the admin app (`staff`): the same screen reads through `core.admin`'s staff logs, which
let operators read any project's logs (and nothing else), and watches every account's events.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from core.actor import Actor
from core.admin.logs import StaffLogs
from core.deploy.service import Deployment, DeploymentService, State
from core.errors import NotFoundError, PanelError
from core.events import Subscription
from tui.formatting import moment
from tui.screens.base import GhstScreen
from tui.widgets.header import AppHeader
from tui.widgets.keybar import KeyBar
from tui.widgets.log_view import ThrottledLog

# What a build log shows: the deployment's state and its log.
WATCHED = ("deployment", "log")
RETRY_SECONDS = 2.0  # after a failed read (the database is down, say)
RUNTIME_TAIL = 200
YIELD_EVERY = 200  # lines taken from the runtime log stream between turns of the event loop
ENDINGS = {
    State.RUNNING: ("is running.", "$text-success"),
    State.SUPERSEDED: ("went live, and has been replaced since.", "$text-muted"),
    State.FAILED: ("failed.", "$text-error"),
    State.CANCELLED: ("was cancelled.", "$text-warning"),
}
WAITING = {
    State.QUEUED: "Queued: waiting for a free builder…",
    State.BUILDING: "Building…",
    State.STARTING: "Starting the new containers and waiting until the app answers…",
}


def duration_text(seconds: float) -> str:
    """ "8 s", "2 min 05 s", "1 h 03 min": how long a deployment took."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LogsScreen(GhstScreen[None]):
    """`deployment_id` given: that deployment's build log; None: the live app's logs."""

    TITLE = "Logs"
    CSS_PATH = "logs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "pause", "Pause"),
        Binding("f", "follow", "Follow"),
        # Priority: the log view's own home/end would scroll without changing follow.
        Binding("home", "top", "Top", priority=True),
        Binding("end", "bottom", "Bottom", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, project: str, deployment_id: int | None = None, *, staff: Actor | None = None
    ) -> None:
        super().__init__()
        self.staff = staff
        self.project_name = project
        self.deployment_id = deployment_id
        self.deployment: Deployment | None = None
        self.finished = False  # the build log is complete, or the stream ended
        self._reported: str | None = None  # an error already shown, until things work again
        self._view = ThrottledLog(id="log")

    @property
    def actor(self) -> Actor:
        return self.staff if self.staff is not None else super().actor

    @property
    def reads(self) -> DeploymentService | StaffLogs:
        return self.panel.deployments if self.staff is None else self.panel.admin.logs

    @property
    def watcher(self) -> Actor:
        # Events carry ids only; the reads they cause go through the staff logs' checks.
        return self.actor if self.staff is None else Actor.system("admin-app")

    @property
    def runtime(self) -> bool:
        return self.deployment_id is None

    def compose(self) -> ComposeResult:
        where = "Logs" if self.runtime else f"Build log #{self.deployment_id}"
        home = ("Home",) if self.staff is None else ("Admin",)
        yield AppHeader(*home, "Projects", self.project_name, where)
        with Vertical(id="logs-page"):
            yield Static("", id="logs-title")
            with Vertical(id="log-box"):
                yield self._view
            yield Static("", id="logs-status")
        yield KeyBar()

    @property
    def log_view(self) -> ThrottledLog:
        return self._view

    def on_mount(self) -> None:
        self.log_view.focus()
        if self.runtime:
            self.query_one("#logs-title", Static).update(
                Content.assemble((f"{self.project_name} · live logs", "bold $text-primary"))
            )
            self.set_status("Connecting to the app's log stream…")
            self.follow_runtime()
        else:
            self.query_one("#logs-title", Static).update(
                Content.assemble(
                    (f"{self.project_name} · build log of #{self.deployment_id}", "bold"),
                )
            )
            self.set_status("Loading the build log…")
            self.follow_build()
        self._show_box_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # One key, `f`, for two actions: the key bar shows the one it does now.
        if action in ("pause", "follow") and self.finished:
            return False  # nothing more is coming
        if action == "pause":
            return self.log_view.auto_scroll
        if action == "follow":
            return not self.log_view.auto_scroll
        return True

    # --- build log ----------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="follow")
    async def follow_build(self) -> None:
        assert self.deployment_id is not None
        deployments, actor = self.reads, self.actor
        project, deployment_id = self.project_name, self.deployment_id
        view = self.log_view
        offset = 0
        # Subscribed before the first read: nothing written after that read is missed.
        with self.panel.events.subscribe(self.watcher, kinds=WATCHED) as events:
            while True:
                try:
                    # The state first: if it has finished, the log read after it is complete.
                    deployment = await deployments.get(actor, project, deployment_id)
                    text, offset = await deployments.build_log(
                        actor, project, deployment_id, offset
                    )
                except NotFoundError:
                    self.set_status("This deployment is gone (the project was deleted).", "error")
                    raise
                except PanelError as error:  # e.g. the database is down: keep trying
                    self.report(error)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                self._reported = None
                events.project_id = deployment.project_id
                view.push_text(text)
                self.show_deployment(deployment)
                if not deployment.active:
                    view.end_text()
                    self.finish()
                    return
                await self.next_change(events, deployment_id)

    @staticmethod
    async def next_change(events: Subscription, deployment_id: int) -> None:
        """Wait until this deployment changed (or events were missed); take all that came."""
        while True:
            arrived = [await events.get(), *events.drain()]
            if any(e.kind == "refresh" or e.deployment_id == deployment_id for e in arrived):
                return

    def show_deployment(self, deployment: Deployment) -> None:
        if deployment == self.deployment:
            return
        self.deployment = deployment
        self.query_one("#logs-title", Static).update(
            Content.assemble(
                (f"{self.project_name} · build log of #{deployment.id}", "bold"),
                (f" · {deployment.archive_name} · {deployment.reason}", "$text-muted"),
                (f" · queued {moment(deployment.created_at)} UTC", "$text-muted"),
            )
        )
        if deployment.active:
            self.set_status(WAITING[deployment.state] + " The log updates by itself.", "active")
            return
        ending, style = ENDINGS.get(deployment.state, ("has finished.", "$text-muted"))
        took = deployment.duration
        after = f" after {duration_text(took.total_seconds())}" if took is not None else ""
        parts: list[tuple[str, str] | str] = [
            (f"#{deployment.id} {ending.rstrip('.')}{after}.", f"bold {style}")
        ]
        if deployment.error:
            parts.append(f" {deployment.error}")
        parts.append((" This is the whole log.", "$text-muted"))
        self.query_one("#logs-status", Static).update(Content.assemble(*parts))

    # --- runtime logs -------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="follow")
    async def follow_runtime(self) -> None:
        deployments, actor = self.reads, self.actor
        try:
            status = await deployments.status(actor, self.project_name)
        except PanelError:
            status = None
        if status is not None and status.live is not None:
            live = status.live
            self.query_one("#logs-title", Static).update(
                Content.assemble(
                    (f"{self.project_name} · live logs", "bold $text-primary"),
                    (f" · #{live.id} {live.archive_name}", "$text-muted"),
                )
            )
        lines = deployments.runtime_logs(actor, self.project_name, tail=RUNTIME_TAIL)
        view = self.log_view
        self.set_status("Following the app's output as it comes.", "active")
        try:
            taken = 0
            async for line in lines:
                view.push_line(line)
                taken += 1
                if taken % YIELD_EVERY == 0:
                    # A stream that hands over big chunks at once never awaits between their
                    # lines: let the other sessions (and this one's keys) in now and then.
                    await asyncio.sleep(0)
        except Exception as error:
            view.flush()
            self.finish()
            if isinstance(error, PanelError):
                self.set_status(error.message, "error")
            else:
                self.set_status("The log stream stopped unexpectedly.", "error")
            raise
        finally:
            close = getattr(lines, "aclose", None)
            if close is not None:
                await close()
        view.flush()
        self.finish()
        again = "g" if self.staff is None else "l"  # the key that opened it
        self.set_status(
            "The log stream ended: the app stopped or was replaced. Press escape, then "
            f"{again} to follow the app running now."
        )

    # --- shared -------------------------------------------------------------------------------

    def set_status(self, message: str, kind: str = "") -> None:
        style = {"active": "$text-warning", "error": "$text-error"}.get(kind, "$text-muted")
        self.query_one("#logs-status", Static).update(Content.styled(message, style))

    def report(self, error: PanelError) -> None:
        """Show a failing poll's error once, not every time it fails again."""
        self.set_status(error.message, "error")
        if self._reported != error.message:
            self._reported = error.message
            self.ghst.show_error(error)

    def _show_box_title(self) -> None:
        follows = self.log_view.auto_scroll
        box = self.query_one("#log-box")
        if self.finished:
            box.border_title = f"{self.log_view.line_count} lines"
        else:
            box.border_title = "following" if follows else "paused: f to follow"
        box.set_class(not follows and not self.finished, "-paused")

    def finish(self) -> None:
        """Nothing more will come: say so in the box title and drop the follow key."""
        self.finished = True
        self._show_box_title()
        self.refresh_bindings()

    def set_follow(self, follow: bool) -> None:
        view = self.log_view
        if view.auto_scroll != follow:
            view.toggle_follow()
        self._show_box_title()
        self.refresh_bindings()

    def action_pause(self) -> None:
        self.set_follow(False)

    def action_follow(self) -> None:
        self.set_follow(True)

    def action_top(self) -> None:
        self.set_follow(False)
        self.log_view.scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.set_follow(True)
        self.log_view.scroll_end(animate=False)

    def action_back(self) -> None:
        self.dismiss()
