"""Unit of work: a service write that can join its caller's transaction.

Every service method that writes takes an optional `conn`. Given one, the method runs on it,
inside the caller's transaction (a savepoint when the caller has one open), so the caller's
rollback undoes it with the caller's other writes: two services' writes, a ledger entry and an
audit row commit or vanish together. Without one, the method opens its own connection and
transaction and commits on its own, as before.

Reads given `conn` bypass the projects' Redis cache (they must see the caller's uncommitted
rows). Writes clear that cache when they run, before the caller commits: a reader in between
may cache the old rows, so a caller whose transaction wrote projects clears it again after
commit (`ProjectService.invalidate(owner)`).

    async with pool.acquire() as conn, conn.transaction():
        await projects.create(actor, "shop", conn=conn)
        await env.set(actor, "shop", "MODE", "live", conn=conn)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.db.pool import Connection, Pool, connection


@asynccontextmanager
async def transaction(pool: Pool, conn: Connection | None = None) -> AsyncIterator[Connection]:
    """A connection in a transaction: the caller's `conn` (joined, nested as a savepoint),
    else a pooled one whose transaction commits when the block ends."""
    if conn is not None:
        async with conn.transaction():
            yield conn
        return
    async with connection(pool) as own, own.transaction():
        yield own


@asynccontextmanager
async def reading(pool: Pool, conn: Connection | None = None) -> AsyncIterator[Connection]:
    """A connection for reads: the caller's `conn` (seeing its uncommitted writes), else a
    pooled one."""
    if conn is not None:
        yield conn
        return
    async with connection(pool) as own:
        yield own
