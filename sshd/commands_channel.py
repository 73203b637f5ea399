"""The command interface on one SSH channel: its streams, and the one place sshd calls
`commands` (the import contract in pyproject.toml allows this module only).

stdin flows with back-pressure: past `HIGH_WATER` buffered bytes the channel stops reading, so
a client pushing a large archive faster than storage takes it waits in TCP, not in memory.
stdout and stderr are the channel's; with a PTY, line ends become CRLF.
"""

from __future__ import annotations

import asyncio
from collections import deque

import asyncssh

# Only this edge into `commands` (pyproject.toml): the exit codes come through the dispatcher.
from commands.dispatch import exit_codes, run_command
from core.actor import Actor
from core.services import Services

HIGH_WATER = 4 << 20  # bytes of stdin held before the channel stops reading
LOW_WATER = 1 << 20
READ_CHUNK = 1 << 20  # what one `read` hands over at most: fewer, larger storage writes


class ChannelSink:
    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, stderr: bool, tty: bool) -> None:
        self._chan = chan
        self._stderr = stderr
        self._tty = tty

    def write(self, text: str) -> None:
        if self._chan.is_closing():
            return
        if self._tty:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        data = text.encode("utf-8", "replace")
        try:
            if self._stderr:
                self._chan.write_stderr(data)
            else:
                self._chan.write(data)
        except (BrokenPipeError, ConnectionError, OSError):
            pass  # the client left: the session cancels the command


class ChannelStreams:
    """stdin, stdout and stderr of one command on `chan`."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, tty: bool) -> None:
        self._chan = chan
        self.stdout = ChannelSink(chan, stderr=False, tty=tty)
        self.stderr = ChannelSink(chan, stderr=True, tty=tty)
        self._writable = asyncio.Event()
        self._writable.set()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._arrived = asyncio.Event()
        self._paused = False

    # -- output ---------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def drain(self) -> None:
        """Wait while the client is not taking what was written (`logs -f` to a slow reader)."""
        await self._writable.wait()

    # -- input ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._arrived.set()
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._chan.pause_reading()

    def end(self) -> None:
        self._eof = True
        self._arrived.set()

    async def read(self) -> bytes:
        while not self._chunks:
            if self._eof:
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        taken: list[bytes] = []
        size = 0
        while self._chunks and size < READ_CHUNK:
            chunk = self._chunks.popleft()
            taken.append(chunk)
            size += len(chunk)
        self._buffered -= size
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._chan.resume_reading()
        return b"".join(taken)


__all__ = ["ChannelStreams", "exit_codes", "run_on_channel"]


async def run_on_channel(
    line: str, actor: Actor, services: Services, streams: ChannelStreams, *, tty: bool
) -> int:
    return await run_command(line, actor, services, streams, stdin=streams, tty=tty)
