"""What a command reads and writes: the channel's streams, never the process's own."""

from __future__ import annotations

import asyncio
from typing import Protocol


def checkpoint() -> None:
    """Raise CancelledError if this task was cancelled and a library swallowed it (Ctrl-C or
    the client leaving during a Redis or database call): loops that wait for more (`logs -f`,
    `deploy --wait`, an upload) call it each time round, so they always end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TextSink(Protocol):
    def write(self, text: str) -> None: ...


class Output(Protocol):
    """stdout and stderr of one command; `drain` waits while the client reads slowly."""

    @property
    def stdout(self) -> TextSink: ...
    @property
    def stderr(self) -> TextSink: ...
    async def drain(self) -> None: ...


class ByteSource(Protocol):
    async def read(self) -> bytes:
        """The next chunk of stdin; b"" at its end."""
        ...


class NoInput:
    """stdin of a caller that has none (tests, the local CLI)."""

    async def read(self) -> bytes:
        return b""
