"""PostgreSQL connection pool (asyncpg), with retries while the server is coming up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from core.errors import UnavailableError

# Only failures to reach the server are retried; a bad password or a missing database is final.
TRANSIENT_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


DATABASE_DOWN = "The database is not reachable right now. Please try again in a moment."
# What a lost or refused server looks like; constraint violations and bad SQL are not this.
LOST_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
)


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs beyond asyncpg's own clean-up (which
    rolls back a transaction left open and drops listeners): nothing. asyncpg's default sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`, a query per release
    (two transactions in PostgreSQL's counts, most of what idle dashboards cost it). The panel
    never leaves state on a pooled connection: no session SET, no cursor, advisory locks
    scoped to a transaction (migrations unlock theirs), and LISTEN only on connections of
    their own (core/events.py, the deploy worker). A test keeps it so (test_pool_reset)."""


@asynccontextmanager
async def connection(pool: Pool) -> AsyncIterator[Connection]:
    """A pooled connection; a database that is down becomes an UnavailableError for the user."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except LOST_CONNECTION_ERRORS as error:
        raise UnavailableError(DATABASE_DOWN) from error


async def create_pool(dsn: str, *, attempts: int = 5, max_size: int = 10) -> Pool:
    """Open a pool, waiting 1, 2, 4, 8 s between attempts while the server is unreachable."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_CONNECT_ERRORS),
            wait=wait_exponential(multiplier=1, min=1, max=8),
            stop=stop_after_attempt(attempts),
            reraise=True,
        ):
            with attempt:
                pool: Pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=max_size,
                    timeout=10,
                    command_timeout=30,
                    reset=keep_session,
                )
                return pool
    except TRANSIENT_CONNECT_ERRORS as error:
        raise UnavailableError(f"The database is not reachable: {error}") from error
    raise AssertionError("unreachable")
