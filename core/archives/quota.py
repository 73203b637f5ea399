"""The storage quota, shared atomically by a user's parallel uploads.

An upload reserves quota as its bytes arrive (`reserve`, in growing steps) and turns its
reservation into a stored version when it is accepted (`commit`, in the transaction that
records the version). Both take the user's row lock (`FOR NO KEY UPDATE`), so two uploads
never both count the same free bytes: stored versions plus live reservations never exceed the
quota. A reservation expires `lease_seconds` after it was last renewed (an upload renews it as
it goes); an expired one counts for nothing, so the quota held by a crashed panel comes back
by itself, and `purge_expired` removes the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.archives import records
from core.db.pool import Connection, Pool, connection
from core.errors import NotFoundError, QuotaExceededError
from core.identity import users
from core.projects.service import ids_of_owner

RESERVATION_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class Standing:
    quota: int
    stored: int  # the user's accepted versions
    reserved: int  # live reservations of the user's other uploads

    @property
    def free(self) -> int:
        return max(0, self.quota - self.stored - self.reserved)


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def does_not_fit(standing: Standing) -> QuotaExceededError:
    others = (
        f" while your other uploads in progress hold {mib(standing.reserved)}"
        if standing.reserved > 0
        else ""
    )
    return QuotaExceededError(
        f"This upload does not fit in your storage quota: {mib(standing.free)} left of"
        f" {mib(standing.quota)}{others}. Delete old versions to make room."
    )


class QuotaLedger:
    def __init__(self, pool: Pool, lease_seconds: float = RESERVATION_LEASE_SECONDS) -> None:
        self._pool = pool
        self.lease_seconds = lease_seconds

    async def standing(self, user_id: int, reservation: uuid.UUID | None = None) -> Standing:
        """The user's quota, stored bytes and the reservations of uploads other than
        `reservation` (a snapshot: `reserve` decides under the lock)."""
        async with connection(self._pool) as conn:
            return await self._standing(conn, user_id, reservation, lock=False)

    async def reserve(self, reservation: uuid.UUID, user_id: int, needed: int, wanted: int) -> int:
        """Make `reservation` hold at least `needed` bytes (up to `wanted` if they are free)
        and renew its lease; the bytes it now holds. QuotaExceededError if `needed` does not
        fit beside the stored versions and the other uploads' reservations."""
        async with connection(self._pool) as conn, conn.transaction():
            standing = await self._standing(conn, user_id, reservation, lock=True)
            if needed > standing.free:
                raise does_not_fit(standing)
            granted = min(max(wanted, needed), standing.free)
            await conn.execute(
                "INSERT INTO quota_reservations (id, user_id, bytes, expires_at)"
                " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
                " ON CONFLICT (id) DO UPDATE"
                " SET bytes = excluded.bytes, expires_at = excluded.expires_at",
                reservation,
                user_id,
                granted,
                self.lease_seconds,
            )
            # Tidy up the user's expired reservations while their row is locked anyway.
            await conn.execute(
                "DELETE FROM quota_reservations WHERE user_id = $1 AND expires_at <= now()",
                user_id,
            )
        return granted

    async def commit(
        self, conn: Connection, reservation: uuid.UUID, user_id: int, size: int
    ) -> None:
        """In the transaction that records a version of `size` bytes: check it fits (its own
        reservation aside) and drop the reservation. Lock the user's row before anything
        else in that transaction."""
        standing = await self._standing(conn, user_id, reservation, lock=True)
        if size > standing.free:
            raise does_not_fit(standing)
        await conn.execute("DELETE FROM quota_reservations WHERE id = $1", reservation)

    async def release(self, reservation: uuid.UUID) -> None:
        """Give the reservation's bytes back (the upload ended). Safe to call more than once."""
        async with connection(self._pool) as conn:
            await conn.execute("DELETE FROM quota_reservations WHERE id = $1", reservation)

    async def purge_expired(self) -> int:
        """Remove the expired reservations of every user (left by crashed uploads)."""
        async with connection(self._pool) as conn:
            result: str = await conn.execute(
                "DELETE FROM quota_reservations WHERE expires_at <= now()"
            )
        return int(result.split()[-1])

    async def _standing(
        self, conn: Connection, user_id: int, reservation: uuid.UUID | None, *, lock: bool
    ) -> Standing:
        # The user's row is the lock that orders their uploads' reservations and commits.
        quota = await users.storage_quota(conn, user_id, lock=lock)
        if quota is None:
            raise NotFoundError("No such account.")
        stored = await records.stored_bytes(conn, await ids_of_owner(conn, user_id))
        reserved = await conn.fetchval(
            "SELECT coalesce(sum(bytes), 0) FROM quota_reservations"
            " WHERE user_id = $1 AND expires_at > now() AND id IS DISTINCT FROM $2",
            user_id,
            reservation,
        )
        return Standing(int(quota), stored, int(reserved))


@dataclass(frozen=True)
class DiskRoom:
    """A project's disk on its plan: its stored versions plus its Docker volumes count."""

    plan: str
    limit: int  # bytes
    archives: int  # bytes of its stored versions
    volumes: int  # bytes in its Docker volumes

    @property
    def free(self) -> int:
        return max(0, self.limit - self.archives - self.volumes)

    def full(self, incoming: int | None = None) -> QuotaExceededError:
        """What the user reads when an upload does not fit: what takes the space, what to do."""
        what = (
            f"This upload ({mib(incoming)}) does not fit"
            if incoming is not None
            else "There is no room left"
        )
        return QuotaExceededError(
            f"{what} in the project's disk on the {self.plan} plan ({mib(self.limit)}): its"
            f" uploaded versions use {mib(self.archives)} and its apps' volumes"
            f" {mib(self.volumes)}, {mib(self.free)} is left. Delete old versions (rm over"
            " SFTP), remove data the app keeps in its volumes, or move the project to a plan"
            " with more disk."
        )


# A project's disk room by the project's id; None when no plan bounds it.
DiskRoomSource = Callable[[int], Awaitable[DiskRoom | None]]
# (plan name, disk in bytes) of a project's plan, read on the caller's connection under the
# project's lock (a plan change made meanwhile is seen); None when no plan bounds it.
DiskLimitSource = Callable[[Connection, int], Awaitable[tuple[str, int] | None]]
