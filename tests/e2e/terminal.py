"""Real SSH clients with a terminal emulator (pyte) reading the screen, for end-to-end tests.

- `AsyncsshTerminal`: an asyncssh client session with a PTY;
- `OpenSSHTerminal`: OpenSSH's `ssh -tt` in a real pseudo-terminal (os.openpty).

Both feed everything the server sends into a `pyte` screen, and offer `wait_for(text)`, which
polls the rendered screen (never a fixed sleep): tests assert on what a user would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh
import pyte

from tests.services import ssh_client_command

WAIT_TIMEOUT = 20.0


class ScreenTimeout(AssertionError):
    pass


class _Screen:
    """A pyte screen fed with the bytes a client receives, plus the raw transcript."""

    def __init__(self, width: int, height: int) -> None:
        self.screen = pyte.Screen(width, height)
        self.stream = pyte.ByteStream(self.screen)
        self.transcript = bytearray()
        self.changed = asyncio.Event()
        self.closed = False

    def feed(self, data: bytes) -> None:
        self.transcript += data
        self.stream.feed(data)
        self.changed.set()

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def resize(self, width: int, height: int) -> None:
        self.screen.resize(lines=height, columns=width)

    async def wait_until(
        self, check: Callable[[], bool], what: str, within: float = WAIT_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + within
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScreenTimeout(f"timed out waiting for {what}; screen:\n{self.text()}")
            self.changed.clear()
            if check():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.25))

    async def wait_for(self, text: str, within: float = WAIT_TIMEOUT) -> None:
        await self.wait_until(lambda: text in self.text(), repr(text), within)

    def row_of(self, label: str) -> int | None:
        """The first row that starts with `label` (ignoring spaces and box edges)."""
        for row, line in enumerate(self.screen.display):
            if line.strip(" │▊▎").startswith(label):
                return row
        return None

    async def wait_focus(self, label: str, within: float = WAIT_TIMEOUT) -> None:
        """Until the terminal cursor (Textual puts it in the focused input) is on `label`'s row."""
        await self.wait_until(
            lambda: self.row_of(label) == self.screen.cursor.y, f"the focus on {label!r}", within
        )

    async def wait_gone(self, text: str, within: float = WAIT_TIMEOUT) -> None:
        await self.wait_until(lambda: text not in self.text(), f"{text!r} to go", within)


class KeyboardInteractiveClient(asyncssh.SSHClient):
    """Answers keyboard-interactive with nothing: how a visitor without a key gets in."""

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        return [] if not prompts else None


class AsyncsshTerminal(_Screen):
    """An asyncssh client session with a PTY (xterm-256color)."""

    def __init__(self, width: int = 100, height: int = 30) -> None:
        super().__init__(width, height)
        self.conn: asyncssh.SSHClientConnection | None = None
        self.process: asyncssh.SSHClientProcess[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.exit_status: int | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        username: str,
        *,
        password: str | None = None,
        client_keys: Sequence[asyncssh.SSHKey] | None = None,
        width: int = 100,
        height: int = 30,
        **options: Any,
    ) -> AsyncsshTerminal:
        terminal = cls(width, height)
        terminal.conn = await asyncssh.connect(
            "127.0.0.1",
            port,
            username=username,
            password=password,
            client_keys=client_keys or None,
            known_hosts=None,
            agent_path=None,
            preferred_auth=options.pop("preferred_auth", "publickey,keyboard-interactive,password"),
            **options,
        )
        terminal.process = await terminal.conn.create_process(
            term_type="xterm-256color", term_size=(width, height), encoding=None
        )
        terminal._reader = asyncio.create_task(terminal._read())
        return terminal

    async def _read(self) -> None:
        assert self.process is not None
        try:
            while True:
                data = await self.process.stdout.read(65536)
                if not data:
                    break
                self.feed(data)
        except (asyncssh.Error, ConnectionError):
            pass
        finally:
            self.closed = True
            self.changed.set()

    def send(self, data: str | bytes) -> None:
        assert self.process is not None
        self.process.stdin.write(data.encode() if isinstance(data, str) else data)

    def change_size(self, width: int, height: int) -> None:
        assert self.process is not None
        self.resize(width, height)
        self.process.change_terminal_size(width, height)

    async def wait_closed(self, within: float = WAIT_TIMEOUT) -> int | None:
        assert self.process is not None
        await self.wait_until(lambda: self.closed, "the session to close", within)
        await asyncio.wait_for(self.process.wait_closed(), within)
        self.exit_status = self.process.exit_status
        return self.exit_status

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def openssh_command(port: int, username: str, key_path: Path, *extra: str) -> list[str]:
    """OpenSSH's client with a PTY forced (`-tt`): the dashboard."""
    return ssh_client_command(port, username, key_path, "-tt", *extra)


def set_window_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class OpenSSHTerminal(_Screen):
    """OpenSSH's `ssh` client running in a real pseudo-terminal of `width` x `height`."""

    def __init__(self, width: int = 100, height: int = 30) -> None:
        super().__init__(width, height)
        self.process: asyncio.subprocess.Process | None = None
        self._master = -1

    @classmethod
    async def start(
        cls, command: Sequence[str], *, width: int = 100, height: int = 30
    ) -> OpenSSHTerminal:
        terminal = cls(width, height)
        master, slave = os.openpty()
        set_window_size(slave, width, height)
        env = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
        env["TERM"] = "xterm-256color"
        # `setsid -c`: a session of its own with the pty as controlling terminal, so ssh gets
        # SIGWINCH when the window size changes (no preexec_fn: this process has threads).
        terminal.process = await asyncio.create_subprocess_exec(
            "setsid",
            "-c",
            *command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        terminal._master = master
        asyncio.get_running_loop().add_reader(master, terminal._on_readable)
        return terminal

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the client exited and the pty closed
            data = b""
        if data:
            self.feed(data)
        else:
            asyncio.get_running_loop().remove_reader(self._master)
            self.closed = True
            self.changed.set()

    def send(self, data: str | bytes) -> None:
        os.write(self._master, data.encode() if isinstance(data, str) else data)

    def change_size(self, width: int, height: int) -> None:
        self.resize(width, height)
        set_window_size(self._master, width, height)

    async def wait_exit(self, within: float = WAIT_TIMEOUT) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise ScreenTimeout(f"ssh did not exit; screen:\n{self.text()}") from None

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(ScreenTimeout):
                await self.wait_exit(5)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        if self._master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1
