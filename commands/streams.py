"""What a command reads and writes: the channel's streams, never the process's own."""

from __future__ import annotations

from typing import Protocol


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
