"""The `archives` table's one owner: the rows of uploaded versions and refused uploads.

The archive service records uploads through it; the quota sums stored versions and the
projects list counts versions through it, each on the connection (and transaction) it holds.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.db.pool import Connection


@dataclass(frozen=True)
class Archive:
    id: int
    project_id: int
    version: int | None
    filename: str
    size: int
    status: str  # "ready" or "rejected"
    message: str
    kind: str | None
    storage_key: str | None
    created_at: datetime

    @property
    def name(self) -> str:
        """The name this version has in SFTP listings and downloads."""
        return f"v{self.version}-{self.filename}" if self.version else self.filename


ARCHIVE_COLUMNS = (
    "id, project_id, version, filename, size, status, message, kind, storage_key, created_at"
)


def _row_to_archive(row: asyncpg.Record) -> Archive:
    return Archive(
        id=row["id"],
        project_id=row["project_id"],
        version=row["version"],
        filename=row["filename"],
        size=row["size"],
        status=row["status"],
        message=row["message"],
        kind=row["kind"],
        storage_key=row["storage_key"],
        created_at=row["created_at"],
    )


async def of_project(conn: Connection, project_id: int) -> list[Archive]:
    """The project's history, newest first: versions and refused uploads."""
    rows = await conn.fetch(
        f"SELECT {ARCHIVE_COLUMNS} FROM archives WHERE project_id = $1"
        " ORDER BY created_at DESC, id DESC",
        project_id,
    )
    return [_row_to_archive(row) for row in rows]


async def insert(
    conn: Connection,
    project_id: int,
    filename: str,
    size: int,
    status: str,
    message: str,
    kind: str | None,
    key: str | None,
) -> Archive:
    """Record an upload; a ready one becomes the project's next version. Hold the project's
    lock (`core.projects.service.lock`) in the same transaction: it orders version numbers."""
    version = None
    if status == "ready":
        version = await conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM archives WHERE project_id = $1",
            project_id,
        )
    row = await conn.fetchrow(
        "INSERT INTO archives (project_id, version, filename, size, status, message,"
        f" kind, storage_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        f" RETURNING {ARCHIVE_COLUMNS}",
        project_id,
        version,
        filename,
        size,
        status,
        message,
        kind,
        key,
    )
    assert row is not None  # INSERT ... RETURNING always yields the row
    return _row_to_archive(row)


async def delete(conn: Connection, archive_id: int) -> None:
    await conn.execute("DELETE FROM archives WHERE id = $1", archive_id)


async def recorded_keys(conn: Connection, keys: Collection[str]) -> set[str]:
    """Which of these storage keys a version points to."""
    rows = await conn.fetch(
        "SELECT storage_key FROM archives WHERE storage_key = ANY($1::text[])", list(keys)
    )
    return {row["storage_key"] for row in rows}


async def stored_bytes(conn: Connection, project_ids: Collection[int]) -> int:
    """The bytes the accepted versions of these projects take in storage."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(size), 0) FROM archives"
        " WHERE project_id = ANY($1::bigint[]) AND status = 'ready'",
        list(project_ids),
    )
    return int(total)


async def version_counts(
    conn: Connection, project_ids: list[int]
) -> dict[int, tuple[int, datetime | None]]:
    """Per project: how many versions it has and when its last upload (even a refused one)
    arrived. Projects without uploads are absent."""
    rows = await conn.fetch(
        "SELECT project_id, count(version) AS versions, max(created_at) AS last_upload_at"
        " FROM archives WHERE project_id = ANY($1::bigint[]) GROUP BY project_id",
        project_ids,
    )
    return {row["project_id"]: (row["versions"], row["last_upload_at"]) for row in rows}


async def storage_key(conn: Connection, archive_id: int) -> str | None:
    """Where a version is stored, by id; None once it is deleted."""
    key = await conn.fetchval("SELECT storage_key FROM archives WHERE id = $1", archive_id)
    return str(key) if key is not None else None
