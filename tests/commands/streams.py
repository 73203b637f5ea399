"""Streams for commands run in tests: what they wrote, and stdin from bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from commands.dispatch import run_command
from core.actor import Actor
from core.services import Services


class Text:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


class Captured:
    def __init__(self) -> None:
        self.stdout = Text()
        self.stderr = Text()

    async def drain(self) -> None:
        pass


class Stdin:
    """stdin in chunks, like an SSH channel hands it over."""

    def __init__(self, data: bytes, chunk: int = 64 * 1024) -> None:
        self._chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self.taken = 0

    async def read(self) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        self.taken += len(chunk)
        return chunk


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str
    calls: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run(
    line: str, actor: Actor, services: Services, stdin: bytes | None = None, *, tty: bool = False
) -> Ran:
    captured = Captured()
    status = await run_command(
        line,
        actor,
        services,
        captured,
        stdin=Stdin(stdin) if stdin is not None else None,
        tty=tty,
    )
    return Ran(status, captured.stdout.text, captured.stderr.text)
