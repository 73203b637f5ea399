"""Is a freshly started app ready for traffic? Asked until yes, a final no, or a deadline.

"Ready" is the image's own HEALTHCHECK when it has one, else an HTTP answer below 500 on its
port. A container that exited, or a HEALTHCHECK that says unhealthy, is a final no: waiting
longer cannot help. Attempts come fast at first (an app usually answers within a second), then
back off 1, 2, 4, 8 s with tenacity so a slow app is not hammered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_chain,
    wait_exponential,
    wait_fixed,
)

from core.errors import ValidationError

FAST_ATTEMPTS = 10
FAST_WAIT = 0.1
PROBE_TIMEOUT = 2.0


class NotReady(Exception):
    """Not yet: try again."""


class Unhealthy(ValidationError):
    title = "The app did not start"


@dataclass(frozen=True)
class Probe:
    """One look at the app: raise NotReady to wait, Unhealthy to give up, return when ready."""

    check: Callable[[], Awaitable[None]]


async def http_status(port: int, host_header: str) -> int:
    """The status of `GET /` on 127.0.0.1:port; NotReady while nothing answers HTTP there."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), PROBE_TIMEOUT
        )
    except (OSError, TimeoutError) as error:
        raise NotReady(f"nothing answers on port {port} yet") from error
    try:
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ghst-health\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise NotReady(f"no HTTP answer on port {port} yet") from error
    finally:
        writer.close()
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise NotReady(f"port {port} answers, but not with HTTP")
    return int(parts[1])


async def wait_until_ready(probe: Probe, deadline: float) -> float:
    """Ask `probe` until it is ready; return the seconds it took. Unhealthy when time runs out."""
    started = time.monotonic()
    last: BaseException | None = None
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(NotReady),
            wait=wait_chain(
                *[wait_fixed(FAST_WAIT)] * FAST_ATTEMPTS,
                wait_exponential(multiplier=1, min=1, max=8),
            ),
            stop=stop_after_delay(deadline),
            reraise=False,
        ):
            with attempt:
                try:
                    await probe.check()
                except NotReady as error:
                    last = error
                    raise
    except RetryError:
        raise Unhealthy(
            f"The app was not ready after {deadline:.0f} s ({last}). Check that it listens on "
            "0.0.0.0 and on the port the panel expects (the PORT variable)."
        ) from None
    return time.monotonic() - started
