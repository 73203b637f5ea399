"""A deployment's build log as it is written: lines buffered, flushed to PostgreSQL a few times a
second, so a chatty build costs a handful of UPDATEs and readers see it grow live.

Every line is cleaned here (`core.log_text`), the one door into the build log: build output,
compose output and the panel's own steps. Storing a line can never fail or stall a deployment:
a failed write is logged for the operator and dropped, and the buffer never holds more than the
log may keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from core.deploy.queue import DeploymentQueue
from core.log_text import clean_log_text

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.3
FLUSH_TIMEOUT = 10.0  # a write that takes longer is given up (the database is in trouble)


def step_line(text: str) -> str:
    return f"==> {datetime.now(UTC):%H:%M:%S} {text}\n"


class JobLog:
    def __init__(self, queue: DeploymentQueue, deployment_id: int) -> None:
        self._queue = queue
        self._deployment_id = deployment_id
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None

    def line(self, text: str) -> None:
        """Add a line (build output as it comes); written within FLUSH_SECONDS."""
        text = clean_log_text(text)
        text = text if text.endswith("\n") else text + "\n"
        size = len(text.encode())
        # Past the cap the database keeps nothing more anyway: do not hold it in memory.
        if self._pending_bytes + size <= self._queue.log_max_bytes:
            self._pending.append(text)
            self._pending_bytes += size
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    def step(self, text: str) -> None:
        """A line of the panel's own, with the time, so users can see where time went."""
        self.line(step_line(text))

    async def take(self) -> str:
        """What is written but not yet stored, for a caller that stores it with a state change
        (so the log is whole when the state shows); the caller puts it back if that fails."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        text, self._pending, self._pending_bytes = "".join(self._pending), [], 0
        return text

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        text, self._pending, self._pending_bytes = "".join(self._pending), [], 0
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self._queue.append_log(self._deployment_id, text)
        except Exception as error:  # a lost log line must never fail the deployment
            log.warning("could not write the log of deployment %s: %s", self._deployment_id, error)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
