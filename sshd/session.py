"""One SSH session channel: the dashboard (a PTY and no command) or the command interface
(`ssh panel <command>`: sshd/commands_channel.py runs it for the login's actor).

The dashboard runs one `GhstApp` in this process over the channel (see `sshd.driver`). Every
way a session can end goes through the app exiting, so nothing is left behind:

- the user leaves (Ctrl+Q, log out): the app exits with a farewell line, printed after the
  screen is restored; exit status 0;
- the client goes away (killed, network drop reaped by keepalive, EOF): the app is told to exit,
  its output is dropped;
- the server ends it (session revoked, user blocked, shutdown): `end(reason)` asks the app to
  leave with `reason` and, should it not, forces it after a short deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import asyncssh

from core.actor import Actor
from core.errors import PanelError
from sshd.channel_login import ChannelLogin
from sshd.commands_channel import ChannelStreams, exit_codes, run_on_channel
from sshd.driver import Terminal, create_hosted_app, run_hosted_app
from tui.app import GhstApp
from tui.visitor import Visitor

if TYPE_CHECKING:
    from sshd.server import Login, SessionHost

log = logging.getLogger(__name__)

NO_ACCOUNT = (
    "There is no account named {name!r}. Connect with a terminal, without a command, to sign"
    " up: ssh -t {address}"
)
INTERRUPTED = "Interrupted."
STOPPING = "The panel is restarting. Please try again in a minute."
TOKEN_NO_DASHBOARD = (
    "An access token or deploy key works for commands and file transfers only, not for the"
    " dashboard: log in with your password or your own SSH key for it."
)
CRASH_FAREWELL = "ghst hit an internal error and closed this session. Please reconnect."
UNAVAILABLE_FAREWELL = "The panel is temporarily unavailable. Please try again in a moment."
# After `end()`, how long the app gets to leave on its own before it is stopped.
END_DEADLINE = 2.0
FORCE_DEADLINE = 1.0
# A client that stops reading while the screen keeps changing: drop it past this backlog.
MAX_OUTPUT_BACKLOG = 8 * 1024 * 1024


class PanelSession(asyncssh.SSHServerSession[bytes]):
    def __init__(
        self,
        host: SessionHost,
        login: Login,
        remote_addr: str,
        address: str,
        connection: ChannelLogin,
    ) -> None:
        self._host = host
        self._login = login
        self._connection = connection
        self._remote_addr = remote_addr
        self._address = address
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term_type: str | None = None
        self._term_size: tuple[int, int] = (0, 0)
        self._command: str | None = None
        self._terminal: Terminal | None = None
        self._task: asyncio.Task[None] | None = None
        # The command's streams while one runs (stdin fed from `data_received`).
        self._streams: ChannelStreams | None = None
        self._interrupted = False
        self._ending: asyncio.Task[None] | None = None
        self.app: GhstApp | None = None
        self.visitor: Visitor | None = None

    # -- asyncssh callbacks -------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self._term_type = term_type
        self._term_size = (term_size[0], term_size[1])
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        if self._term_type is None or self._command is not None:
            if self._chan is not None:
                # From now on: stdin (an upload) may arrive before the login is checked.
                self._streams = ChannelStreams(self._chan, tty=self._term_type is not None)
            self._task = self._host.spawn(self._run_command(), name="ssh-command")
        else:
            self._task = self._host.spawn(self._run_dashboard(), name="ssh-dashboard")
        if self._chan is not None:
            self._connection.track(self._task, self._chan)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._terminal is not None:
            self._terminal.feed(data)
        elif self._streams is not None:
            if self._term_type is not None and b"\x03" in data:  # Ctrl-C typed on a PTY
                self._interrupt()
                return
            self._streams.feed(data)

    def signal_received(self, signal: str) -> None:
        if signal == "INT" and self._streams is not None:
            self._interrupt()

    def pause_writing(self) -> None:
        if self._streams is not None:
            self._streams.pause_writing()

    def resume_writing(self) -> None:
        if self._streams is not None:
            self._streams.resume_writing()

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._term_size = (width, height)
        if self._terminal is not None:
            self._terminal.resize(width, height)

    def eof_received(self) -> bool:
        if self._streams is not None:  # a command's stdin ended; its output may go on
            self._streams.end()
            return True
        # The client will send nothing more: a dashboard cannot go on without a keyboard.
        self._stop_app()
        return True

    def break_received(self, msec: int) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._terminal is not None:
            self._terminal.close()
        self._stop_app()
        self._chan = None
        # The client left (or was cut off) while a command ran: `logs -f`, `deploy --wait`
        # and an upload end here, their `finally` blocks undoing what was half done.
        if self._streams is not None and self._task is not None and not self._task.done():
            self._task.cancel()

    # -- the command interface ----------------------------------------------------------------

    async def _run_command(self) -> None:
        tty = self._term_type is not None
        newline = "\r\n" if tty else "\n"
        try:
            await self._connection.channel_login()
        except PanelError as error:
            self._finish(error.message + newline, error.exit_code, stderr=True)
            return
        streams = self._streams
        if self._chan is None or streams is None:
            return
        user = self._login.user
        if user is None:
            text = NO_ACCOUNT.format(name=self._login.ssh_username[:64], address=self._address)
            self._finish(text + newline, exit_codes.FORBIDDEN, stderr=True)
            return
        try:
            status = await run_on_channel(
                self._command or "", self._actor(), self._host.services, streams, tty=tty
            )
        except asyncio.CancelledError:
            if self._interrupted:
                self._finish(INTERRUPTED + newline, exit_codes.INTERRUPTED, stderr=True)
            elif self._chan is not None:  # the server is stopping: the client may try again
                self._finish(STOPPING + newline, exit_codes.TRY_LATER, stderr=True)
            else:
                raise  # the client left: nobody to tell
            return
        self._finish("", status)

    def _actor(self) -> Actor:
        """Who the command acts as: the token or deploy key that logged in, limited to its
        scopes and projects, else the account itself (every scope of a person)."""
        actor = self._login.actor
        assert actor is not None
        # One request id per command: every audit entry it writes carries it.
        return actor.acting_from(
            "command", source_address=self._remote_addr, request_id=uuid.uuid4().hex[:16]
        )

    def _interrupt(self) -> None:
        task = self._task
        if task is not None and not task.done() and not self._interrupted:
            self._interrupted = True
            task.cancel()

    # -- the dashboard ------------------------------------------------------------------------

    async def _run_dashboard(self) -> None:
        login = self._login
        if login.limited is not None:
            # A leaked token or deploy key must not open the account's dashboard (keys, password, tokens).
            self._finish(TOKEN_NO_DASHBOARD + "\r\n", 1, stderr=True)
            return
        visitor = Visitor(
            remote_addr=self._remote_addr,
            ssh_username=login.ssh_username,
            presented_key=login.presented_key,
            user=login.user,
        )
        if login.user is not None:
            try:
                # The connection's login, checked for this channel (ControlMaster reuses one
                # connection for many channels, long after it logged in).
                visitor.session = await self._connection.channel_login()
            except PanelError as error:
                self._finish(error.message + "\r\n", error.exit_code, stderr=True)
                return
            except Exception:
                log.exception("cannot open a login session for %s", login.user.username)
                self._finish(UNAVAILABLE_FAREWELL + "\r\n", 1, stderr=True)
                return
        if self._chan is None:  # the client left while the session was being opened
            return
        self.visitor = visitor
        self._terminal = Terminal(self._send, self._term_size)
        app = create_hosted_app(lambda: GhstApp(self._host.app_services, visitor))
        self.app = app
        try:
            result = await run_hosted_app(app, self._terminal, started=self._registered)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dashboard session of %s crashed", _who(visitor))
            result, status = CRASH_FAREWELL, 1
        else:
            status = 0 if app.return_code in (0, None) else 1
            if status:
                log.error("dashboard of %s exited with status %s", _who(visitor), status)
                result = CRASH_FAREWELL
        finally:
            self._host.unregister(self)
            self.app = None
            self._terminal.close()
        farewell = result if isinstance(result, str) else ""
        self._finish(f"{farewell}\r\n" if farewell else "", status)

    def _registered(self) -> None:
        self._host.register(self)

    def _send(self, data: bytes) -> None:
        chan = self._chan
        if chan is None or chan.is_closing():
            return
        if chan.get_write_buffer_size() > MAX_OUTPUT_BACKLOG:
            log.warning("%s does not read its screen: closing the connection", _who(self.visitor))
            if self._terminal is not None:
                self._terminal.close()
            self._stop_app()
            chan.get_connection().close()
            return
        try:
            chan.write(data)
        except (BrokenPipeError, ConnectionError):
            self._stop_app()

    def _finish(self, text: str, status: int, *, stderr: bool = False) -> None:
        chan = self._chan
        if chan is None or chan.is_closing():
            return
        try:
            if text:
                data = text.encode("utf-8", "replace")
                if stderr:
                    chan.write_stderr(data)
                else:
                    chan.write(data)
            chan.exit(status)
        except (BrokenPipeError, ConnectionError, OSError):
            pass

    # -- ending from the outside --------------------------------------------------------------

    def _stop_app(self) -> None:
        app = self.app
        if app is not None and not app._exit:
            app.exit()

    def end(self, reason: str) -> None:
        """The server ends this session: the app leaves with `reason` (forced if it lingers)."""
        app = self.app
        if app is None or self._ending is not None:
            return
        try:
            app.end_session(reason)
        except Exception:
            log.exception("end_session failed for %s", _who(self.visitor))
        self._ending = self._host.spawn(self._enforce_end(reason), name="ssh-end")

    async def _enforce_end(self, reason: str) -> None:
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=END_DEADLINE)
        if done:
            return
        app = self.app
        if app is not None:
            log.warning("%s did not leave after end_session: exiting it", _who(self.visitor))
            app.exit(reason)
        done, _ = await asyncio.wait({task}, timeout=FORCE_DEADLINE)
        if done:
            return
        log.error("%s is stuck: cancelling it and closing the channel", _who(self.visitor))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        chan = self._chan
        if chan is not None:
            chan.close()

    async def wait(self) -> None:
        """Until this session's work (dashboard or command) is over."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._task)


def _who(visitor: Visitor | None) -> str:
    if visitor is None:
        return "a visitor"
    if visitor.user is not None:
        return f"{visitor.user.username} from {visitor.remote_addr}"
    return f"visitor {visitor.ssh_username!r} from {visitor.remote_addr}"
