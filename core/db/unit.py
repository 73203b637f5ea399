"""Unit of work: a service method joins its caller's transaction, or opens its own.

    async with transaction(pool, conn) as tx:   # conn=None: a new transaction on a pooled
        ...                                     # connection; else a savepoint inside conn's

So a caller can make two services' writes atomic by passing the same connection to both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.db.pool import Connection, Pool, connection


@asynccontextmanager
async def transaction(pool: Pool, conn: Connection | None = None) -> AsyncIterator[Connection]:
    if conn is not None:
        async with conn.transaction():
            yield conn
        return
    async with connection(pool) as own, own.transaction():
        yield own
