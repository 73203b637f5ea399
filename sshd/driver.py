"""A Textual driver over an SSH channel, and the guards for hosting many apps in one process.

Textual is written for one app per process that owns the terminal. Here every SSH session runs
its own `App` on the server's shared event loop, so the process-wide things Textual touches are
neutralised (docs/textual-in-process.md tells why, with what was measured):

- `App.run_async` swaps `sys.stdout`/`sys.stderr` for the app's print capture; apps that exit
  out of order would leave them pointing at a dead app. `prepare_hosting` makes that swap a no-op
  for apps whose driver is an `SSHDriver` (and only for them).
- `App.run_async` installs the eager task factory on Python 3.12+, which stalls new logins on
  the shared loop: `run_hosted_app` puts the loop's own factory back.
- `XTermParser` caches parsed key sequences on the class (keyed by parser), pinning finished
  sessions: `SessionParser` parses without that cache. Two render caches did the same with
  widgets' rendered lines: `sshd.render_caches` keys them by their inputs instead.
- Colour depth is read from the process environment (`TEXTUAL_COLOR_SYSTEM`); OpenSSH sends
  no COLORTERM, so hosted apps get truecolor unless the operator chose otherwise
  (`create_hosted_app`; `ghst serve` also sets it in its environment). COLUMNS/LINES are never set: the size of
  each session comes from its PTY request.
- Input arrives as bytes; it is decoded incrementally with errors="replace", so a client that
  sends invalid UTF-8 gets U+FFFD characters rather than a dead session.

No threads: input is fed from asyncssh's callbacks on the loop, output is buffered per frame
and handed to the channel on `flush`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, TypeVar, cast

import textual.app
import textual.constants
from textual import events
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.app import App
from textual.driver import Driver
from textual.geometry import Size

from sshd.render_caches import share_render_caches

log = logging.getLogger(__name__)

ReturnType = TypeVar("ReturnType")

DEFAULT_SIZE = (80, 24)
DEFAULT_COLOR_SYSTEM = "truecolor"
# Input that arrives before the app has started its driver (typed ahead during login).
MAX_PENDING_INPUT = 64 * 1024

ENTER_APPLICATION_MODE = (
    "\x1b[?1049h"  # alternate screen
    "\x1b[?1000h\x1b[?1003h\x1b[?1015h\x1b[?1006h"  # mouse: buttons, motion, urxvt, SGR
    "\x1b[?25l"  # hide the cursor
    "\x1b[?1004h"  # focus in / out reports
    "\x1b[?2004h"  # bracketed paste
    "\x1b[?7l"  # no line wrap
    "\x1b[?2026$p"  # does the terminal do synchronized output?
)
LEAVE_APPLICATION_MODE = (
    "\x1b[?2004l"
    "\x1b[?7h"
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l"
    "\x1b[?1004l"
    "\x1b[0m"  # reset colours before the farewell line
    "\x1b[?1049l"  # back to the normal screen
    "\x1b[?25h"  # show the cursor
)


class Terminal:
    """The client's end of one SSH PTY channel, as the driver of one app sees it.

    The SSH session owns it: it hands in input bytes and size changes, and it decides what
    happens to output (`send`). A driver attaches while its app runs in application mode;
    input typed before that is kept (bounded) and fed on attach.
    """

    def __init__(self, send: Callable[[bytes], None], size: tuple[int, int]) -> None:
        self._send = send
        self.size = _sane_size(*size)
        self.closed = False
        self._driver: SSHDriver | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, data: bytes) -> None:
        if not self.closed and data:
            self._send(data)

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        if self._driver is not None:
            self._driver.feed(data)
        elif self._pending_bytes + len(data) <= MAX_PENDING_INPUT:
            self._pending.append(data)
            self._pending_bytes += len(data)

    def resize(self, width: int, height: int) -> None:
        self.size = _sane_size(width, height)
        if self._driver is not None:
            self._driver.resize(*self.size)

    def close(self) -> None:
        """The channel is gone: drop output and input from now on."""
        self.closed = True
        self._pending.clear()
        self._driver = None

    def attach(self, driver: SSHDriver) -> None:
        if self.closed:
            return
        self._driver = driver
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for data in pending:
            driver.feed(data)

    def detach(self, driver: SSHDriver) -> None:
        if self._driver is driver:
            self._driver = None


def _sane_size(width: int, height: int) -> tuple[int, int]:
    # A client may send 0x0 (no size known); Textual cannot lay out into nothing.
    if width <= 0 or height <= 0:
        return DEFAULT_SIZE
    return (min(width, 1000), min(height, 1000))


class SessionParser(XTermParser):
    """XTermParser without the class-level `lru_cache` on `_parse_extended_key`.

    That cache is keyed by (parser, sequence) and keeps 1024 entries for the whole process, so
    it keeps parsers and the key events they made (and whatever those reference) alive long
    after their session ended.
    """

    _parse_uncached = XTermParser._parse_extended_key.__wrapped__

    def _parse_extended_key(self, sequence: str) -> list[events.Key] | None:  # type: ignore[override]
        return SessionParser._parse_uncached(self, sequence)

    @property
    def timeout_at(self) -> float | None:
        """When a pending escape sequence times out (a lone ESC becomes the escape key)."""
        return cast(float | None, getattr(self, "_timeout_time", None))


class SSHDriver(Driver):
    """Drives one hosted app over one SSH channel (a `Terminal`)."""

    def __init__(
        self,
        app: App[Any],
        *,
        debug: bool = False,
        mouse: bool = True,
        size: tuple[int, int] | None = None,
        terminal: Terminal,
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size or terminal.size)
        self._terminal = terminal
        self._output: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._parser = SessionParser()
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._input_enabled = False
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- output -----------------------------------------------------------------------------

    def write(self, data: str) -> None:
        self._output.append(data)
        # Textual flushes after each frame; this catches writes made outside a frame.
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._output:
            data = "".join(self._output)
            self._output.clear()
            self._terminal.write(data.encode("utf-8", "replace"))

    # -- application mode -------------------------------------------------------------------

    def start_application_mode(self) -> None:
        self.write(ENTER_APPLICATION_MODE)
        self.flush()
        # The window may have changed size since the app was created. Only then a Resize: the
        # app lays out for the size it was started with, and a Resize of that same size
        # would lay out every screen again (Textual keeps it and delivers it once idle).
        size = self._terminal.size
        if size != self._size:
            self._size = size
            self._post_resize(*size)
        self._input_enabled = True
        self._terminal.attach(self)

    def stop_application_mode(self) -> None:
        self.disable_input()
        self.write(LEAVE_APPLICATION_MODE)
        self.flush()

    def disable_input(self) -> None:
        self._input_enabled = False
        self._terminal.detach(self)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def close(self) -> None:
        self.disable_input()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._output.clear()

    # -- input ------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if not self._input_enabled:
            return
        text = self._decode(data)
        if text:
            for message in self._parser.feed(text):
                self.process_message(message)
        self._schedule_tick()

    def resize(self, width: int, height: int) -> None:
        self._size = (width, height)
        if self._input_enabled:
            self._post_resize(width, height)

    def _post_resize(self, width: int, height: int) -> None:
        size = Size(width, height)
        self._app.post_message(events.Resize(size, size))

    def _schedule_tick(self) -> None:
        """A lone ESC is the escape key only once no more of a sequence follows in time."""
        timeout_at = self._parser.timeout_at
        if timeout_at is None or not self._input_enabled:
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        delay = max(0.0, timeout_at - get_time()) + 0.005
        self._tick_handle = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        if not self._input_enabled:
            return
        for message in self._parser.tick():
            self.process_message(message)
        self._schedule_tick()

    def send_message(self, message: Any) -> None:
        # Same thread, same loop: no need for run_coroutine_threadsafe.
        self._app.post_message(message)

    # -- things that would act on the server instead of the user's machine -----------------

    def open_url(self, url: str, new_tab: bool = True) -> None:
        log.info("not opening %r on the server for an SSH session", url)

    def deliver_binary(
        self,
        binary: BinaryIO | TextIO,
        *,
        delivery_key: str,
        save_path: Path,
        open_method: Literal["browser", "download"] = "download",
        encoding: str | None = None,
        mime_type: str | None = None,
        name: str | None = None,
    ) -> None:
        # The default saves a file on the server's disk: never for a remote user.
        with contextlib.suppress(Exception):
            binary.close()
        self._app.post_message(
            events.DeliveryFailed(
                key=delivery_key,
                exception=PermissionError("file delivery is not available over SSH"),
                name=name,
            )
        )


# -- process-wide guards ------------------------------------------------------------------------

_original_redirect_stdout: Callable[[IO[str]], AbstractContextManager[Any]] = getattr(  # noqa: B009
    textual.app, "redirect_stdout"
)
_original_redirect_stderr: Callable[[IO[str]], AbstractContextManager[Any]] = getattr(  # noqa: B009
    textual.app, "redirect_stderr"
)


def _is_hosted_capture(target: IO[str]) -> bool:
    app = getattr(target, "app", None)
    return isinstance(app, App) and isinstance(getattr(app, "_driver", None), SSHDriver)


def _hosted_redirect_stdout(target: IO[str]) -> AbstractContextManager[Any]:
    if _is_hosted_capture(target):
        return contextlib.nullcontext()
    return _original_redirect_stdout(target)


def _hosted_redirect_stderr(target: IO[str]) -> AbstractContextManager[Any]:
    if _is_hosted_capture(target):
        return contextlib.nullcontext()
    return _original_redirect_stderr(target)


def prepare_hosting() -> None:
    """Make this process fit to host apps over SSH. Idempotent; call before the first session."""
    setattr(textual.app, "redirect_stdout", _hosted_redirect_stdout)  # noqa: B010
    setattr(textual.app, "redirect_stderr", _hosted_redirect_stderr)  # noqa: B010
    share_render_caches()


AppT = TypeVar("AppT", bound=App[Any])


def hosted_color_system() -> str:
    """`TEXTUAL_COLOR_SYSTEM` if the operator set it, else truecolor.

    OpenSSH sends no COLORTERM, and the server's own environment says nothing about the
    user's terminal: without this, Textual would guess from the server's env. `ghst serve` also
    puts the default into its environment before Textual is imported.
    """
    return os.environ.get("TEXTUAL_COLOR_SYSTEM") or DEFAULT_COLOR_SYSTEM


def create_hosted_app(factory: Callable[[], AppT]) -> AppT:
    """Construct an app with the hosted colour system (`hosted_color_system`).

    Textual reads the variable once, when `textual.constants` is first imported; the app's
    console takes it from there in `App.__init__`. The override is scoped to the constructor,
    so apps that are not hosted (tests, `ghst admin`) in the same process keep theirs.
    """
    prepare_hosting()
    wanted = hosted_color_system()
    previous = textual.constants.COLOR_SYSTEM
    setattr(textual.constants, "COLOR_SYSTEM", wanted)  # noqa: B010
    try:
        return factory()
    finally:
        setattr(textual.constants, "COLOR_SYSTEM", previous)  # noqa: B010


@contextlib.contextmanager
def _loop_keeps_task_factory(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    factory = loop.get_task_factory()
    try:
        yield
    finally:
        if loop.get_task_factory() is not factory:
            loop.set_task_factory(factory)


async def run_hosted_app(
    app: App[ReturnType], terminal: Terminal, *, started: Callable[[], None] | None = None
) -> ReturnType | None:
    """Run `app` in application mode over `terminal` until it exits; return its return value.

    `started` is called once the app task exists (the caller may register the app then).
    The app is asked to exit by the caller (`app.exit`, `end_session`); cancelling this
    coroutine cancels the app.
    """
    prepare_hosting()
    loop = asyncio.get_running_loop()
    app.driver_class = cast(type[Driver], functools.partial(SSHDriver, terminal=terminal))
    with _loop_keeps_task_factory(loop):
        task = loop.create_task(app.run_async(size=terminal.size, mouse=True), name=repr(app))
        # run_async sets an eager task factory (3.12+) in its first step: undo it right after,
        # before any other connection's callback runs.
        loop.call_soon(_restore_factory, loop, loop.get_task_factory())
        if started is not None:
            started()
        return await task


def _restore_factory(loop: asyncio.AbstractEventLoop, factory: Any) -> None:
    if loop.get_task_factory() is not factory:
        loop.set_task_factory(factory)
