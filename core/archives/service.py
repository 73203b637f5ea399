"""Archive versions of a project: one upload path for scp and SFTP (and later the TUI).

An upload streams into storage as it arrives (`Upload.write`), counted against the user's quota
byte by byte: it reserves quota in growing steps as bytes arrive (`core.archives.quota`), so uploads
running in parallel share the quota instead of each seeing all of it. The archive is checked while
it arrives (`core.archives.inspection`: a tar or tar.gz in the same forward pass, a zip from the
bytes kept of its end), so storage is written once and read back for nothing; the verdict comes
when the upload completes, before it becomes the project's next version.
A refused archive is deleted from storage and kept in the history with the reason; an aborted or
failed upload leaves nothing behind: no version, no object, no pending multipart upload.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import re
import time
import uuid

from core.actor import Actor
from core.archives import records
from core.archives.checks import ArchiveLimits, ArchiveRejected
from core.archives.inspection import UploadInspection
from core.archives.quota import (
    DiskLimitSource,
    DiskRoom,
    DiskRoomSource,
    QuotaLedger,
    does_not_fit,
    mib,
)
from core.archives.records import Archive as Archive
from core.archives.storage import ObjectReader, ObjectStorage, StorageWriter
from core.audit import entries as audit
from core.audit.service import records_refusals
from core.db.pool import Connection, Pool
from core.db.unit import reading, transaction
from core.errors import NotFoundError, QuotaExceededError, ValidationError
from core.projects import service as projects_store
from core.projects.service import Project, ProjectService

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
FILENAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
# How a version is named in listings and downloads: "v3-app.zip".
VERSION_NAME = re.compile(r"^v(\d{1,9})-(.+)$")


def validate_filename(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1]
    # A downloaded version uploaded again ("v1-app.zip") keeps its own name, not "v2-v1-app.zip".
    listed = VERSION_NAME.match(base)
    if listed:
        base = listed.group(2)
    if not base.lower().endswith(ARCHIVE_SUFFIXES):
        raise ValidationError(
            f"{base[:60]!r} is not an archive name: upload a .zip, .tar, .tar.gz or .tgz file."
        )
    if not FILENAME_PATTERN.match(base):
        raise ValidationError(
            "An archive name uses letters, digits, dots, dashes, underscores and plus signs "
            "(at most 100 characters)."
        )
    return base


class Upload:
    """One archive arriving. `write` as bytes come, then `finish` (or `abort`)."""

    def __init__(
        self,
        service: ArchiveService,
        project: Project,
        filename: str,
        key: str,
        writer: StorageWriter,
        quota_remaining: int,
        ledger: QuotaLedger,
        inspection: UploadInspection,
        room: DiskRoom | None = None,
        actor: Actor | None = None,
    ) -> None:
        self.project = project
        # Who uploads, for the audit entry of the result.
        self.actor = actor or Actor.system("uploads")
        self.filename = filename
        self._service = service
        self._key = key
        self._writer = writer
        self.quota_remaining = quota_remaining
        # The project's plan's disk left when the upload began (None: no plan bounds it).
        self.room = room
        self.received = 0
        self._done = False
        self._ledger = ledger
        self._inspection = inspection
        self.reservation = uuid.uuid4()
        self._reserved = 0  # bytes of quota this upload holds
        self._renew_at = 0.0  # when its reservation's lease wants renewing (monotonic)

    async def write(self, data: bytes) -> None:
        if self._done:
            raise ValidationError("This upload is already finished.")
        needed = self.received + len(data)
        if self.room is not None and needed > self.room.free:
            await self.abort()
            raise self.room.full(needed)
        if needed > self._reserved or time.monotonic() >= self._renew_at:
            try:
                await self._reserve(needed)
            except BaseException:
                await self.abort()
                raise
        self.received = needed
        try:
            await self._writer.write(data)
            await self._inspection.feed(data)
        except BaseException:
            await self.abort()
            raise

    async def _reserve(self, needed: int) -> None:
        """Hold at least `needed` bytes of quota, a step more if free: few round trips."""
        step = min(max(self._reserved, RESERVE_STEP_MIN), RESERVE_STEP_MAX)
        self._reserved = await self._ledger.reserve(
            self.reservation, self.project.user_id, needed, needed + step
        )
        self._renew_at = time.monotonic() + self._ledger.lease_seconds / 10

    async def finish(self) -> Archive:
        """Complete the upload, check the archive, and make it the project's next version."""
        if self._done:
            raise ValidationError("This upload is already finished.")
        self._done = True
        try:
            try:
                stored = await self._writer.complete()
            except BaseException:
                self._inspection.abort()
                await self._writer.abort()
                raise
            return await self._service._accept(
                self.project,
                self.filename,
                self._key,
                stored.size,
                self.reservation,
                self._inspection,
                self.actor,
            )
        finally:
            await self._release()

    async def abort(self) -> None:
        """Drop what arrived: nothing stays in storage. Safe to call more than once."""
        self._done = True
        self._inspection.abort()
        try:
            await self._writer.abort()
        except Exception:
            log.exception("could not abort upload %s", self._key)
        await self._release()

    async def _release(self) -> None:
        try:
            await self._ledger.release(self.reservation)
        except Exception as error:  # its lease runs out by itself
            log.warning("could not release the quota held by upload %s: %s", self._key, error)


# How long nothing must have been written to an unfinished upload before `recover` removes it:
# uploads running in another panel process sharing the storage are never that quiet.
STALE_UPLOAD_SECONDS = 3600.0
UPLOAD_PREFIX = "projects/"  # every archive's key: projects/<project id>/<random>
# How old a stored object no version points to must be before `recover` removes it. An upload
# is checked right after it is stored, within minutes; S3 dates a multipart object from when
# its upload began, which for a large, slow upload may be long before. Such objects only take
# space, so there is no hurry.
ORPHAN_OBJECT_SECONDS = 24 * 3600.0


# An upload reserves quota this many bytes ahead of what arrived (its own size so far, within
# these bounds): a 1 GiB upload takes ~20 round trips to PostgreSQL.
RESERVE_STEP_MIN = 1 << 20
RESERVE_STEP_MAX = 64 << 20


class ArchiveService:
    def __init__(
        self,
        pool: Pool,
        storage: ObjectStorage,
        projects: ProjectService,
        limits: ArchiveLimits | None = None,
        quota: QuotaLedger | None = None,
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._projects = projects
        self._limits = limits or ArchiveLimits()
        self._quota = quota or QuotaLedger(pool)
        self._disk_room: DiskRoomSource | None = None
        self._disk_limit: DiskLimitSource | None = None

    def attach_disk_room(
        self, source: DiskRoomSource, limit_in: DiskLimitSource | None = None
    ) -> None:
        """Where a project's disk on its plan comes from (billing, which sits above);
        `limit_in`: its plan's disk read again when a version is recorded, so a plan change
        committed during the upload is the one it must fit."""
        self._disk_room = source
        self._disk_limit = limit_in

    async def _room(self, project: Project) -> DiskRoom | None:
        return await self._disk_room(project.id) if self._disk_room is not None else None

    async def recover(
        self,
        older_than: float = STALE_UPLOAD_SECONDS,
        orphans_older_than: float = ORPHAN_OBJECT_SECONDS,
    ) -> list[str]:
        """Remove what a crash left of uploads: temporary files, multipart uploads, and objects
        stored but never recorded (a crash between the end of an upload and its check).

        Only unfinished uploads nothing was written to for `older_than` seconds, and objects
        older than `orphans_older_than` that no version points to: an upload in progress in
        another panel process is never touched. Run once when the server starts; returns the
        keys removed (none of them ever became a version).
        """
        removed = await self._storage.abort_stale_uploads(older_than)
        for key in removed:
            log.info("removed the unfinished upload %s left by an earlier run", key)
        orphans = await self._orphaned_objects(orphans_older_than)
        for key in orphans:
            await self._storage.delete(key)
            log.info("removed %s, stored by an earlier run but never made a version", key)
        expired = await self._quota.purge_expired()
        if expired:
            log.info("released %d quota reservation(s) of uploads that never ended", expired)
        return sorted(removed + orphans)

    async def _orphaned_objects(self, older_than: float) -> list[str]:
        cutoff = time.time() - older_than
        candidates = [
            listed.key
            for listed in await self._storage.list_objects(UPLOAD_PREFIX)
            if listed.modified < cutoff
        ]
        if not candidates:
            return []
        async with reading(self._pool) as conn:
            recorded = await records.recorded_keys(conn, candidates)
        return [key for key in candidates if key not in recorded]

    async def usage(self, actor: Actor, *, owner_id: int | None = None) -> tuple[int, int]:
        """(bytes used by the account's stored versions, its quota)."""
        actor.require("read")
        standing = await self._quota.standing(actor.on_behalf_of(owner_id))
        return standing.stored, standing.quota

    @records_refusals("archive.upload")
    async def begin_upload(self, actor: Actor, project_name: str, filename: str) -> Upload:
        """Start an upload into the project; the quota is its owner's. Needs "deploy"."""
        actor.require("deploy")
        project = await self._projects.resolve(actor, project_name)
        async with reading(self._pool) as db:
            await self._projects.holds.refuse(db, project.id, "upload")
        filename = validate_filename(filename)
        standing = await self._quota.standing(project.user_id)
        if standing.free <= 0:
            if standing.reserved > 0:
                raise does_not_fit(standing)
            raise QuotaExceededError(
                f"Your storage quota ({mib(standing.quota)}) is full."
                " Delete old versions to make room."
            )
        room = await self._room(project)
        if room is not None and room.free <= 0:
            raise room.full()
        key = f"{UPLOAD_PREFIX}{project.id}/{uuid.uuid4().hex}"
        writer = await self._storage.open_writer(key)
        storage = self._storage
        inspection = UploadInspection(self._limits, lambda: storage.open_seekable(key))
        return Upload(
            self, project, filename, key, writer, standing.free, self._quota, inspection, room,
            actor,
        )  # fmt: skip

    async def _accept(
        self,
        project: Project,
        filename: str,
        key: str,
        size: int,
        reservation: uuid.UUID,
        inspection: UploadInspection,
        actor: Actor,
    ) -> Archive:
        # What is free now, this upload's own reservation aside: other uploads may have ended
        # (or started) since this one began.
        quota_remaining = (await self._quota.standing(project.user_id, reservation)).free
        room = await self._room(project)  # volumes may have grown since the upload began
        if room is not None:
            quota_remaining = min(quota_remaining, room.free)
        limits = dataclasses.replace(self._limits, quota_remaining=quota_remaining)
        try:
            report = await inspection.finish(limits)
        except ArchiveRejected as rejected:
            await self._storage.delete(key)
            await self._record(
                project, filename, size, "rejected", rejected.message, None, None, actor=actor
            )
            raise
        except BaseException:
            await self._storage.delete(key)
            raise
        try:
            return await self._record(
                project, filename, size, "ready", "", report.kind, key, reservation, room,
                actor=actor,
            )  # fmt: skip
        except BaseException:
            await self._storage.delete(key)
            raise

    async def _record(
        self,
        project: Project,
        filename: str,
        size: int,
        status: str,
        message: str,
        kind: str | None,
        key: str | None,
        reservation: uuid.UUID | None = None,
        room: DiskRoom | None = None,
        *,
        actor: Actor,
    ) -> Archive:
        async with transaction(self._pool) as conn:
            if reservation is not None:
                # First the user's row (the quota's lock), then the project's.
                await self._quota.commit(conn, reservation, project.user_id, size)
            # The project row is the lock that hands out version numbers one at a time.
            if not await projects_store.lock(conn, project.id):
                raise NotFoundError(f"The project {project.name!r} was deleted meanwhile.")
            if room is not None and status == "ready" and self._disk_limit is not None:
                # The plan may have changed since the upload began: a downgrade takes this
                # same lock, so what is read now stays true until this commit.
                bound = await self._disk_limit(conn, project.id)
                room = (
                    None
                    if bound is None
                    else dataclasses.replace(room, plan=bound[0], limit=bound[1])
                )
            if room is not None and status == "ready":
                # Under the project's lock: parallel uploads to one project cannot both take
                # the last free bytes of its plan's disk.
                stored = await records.stored_bytes(conn, [project.id])
                if stored + room.volumes + size > room.limit:
                    raise dataclasses.replace(room, archives=stored).full(size)
            archive = await records.insert(
                conn, project.id, filename, size, status, message, kind, key
            )
            await audit.record(
                conn,
                actor,
                "archive.upload",
                audit.Target("project", project.name, project.id, project.user_id),
                "ok" if status == "ready" else "failed",
                {"archive": archive.name, "bytes": size, "status": status, "message": message},
            )
        await self._projects.invalidate(project.user_id)
        return archive

    async def list(
        self, actor: Actor, project_name: str, *, conn: Connection | None = None
    ) -> list[Archive]:
        """The project's history, newest first: versions and refused uploads."""
        actor.require("read")
        return (await self._history(actor, project_name, conn))[1]

    async def _history(
        self, actor: Actor, project_name: str, conn: Connection | None
    ) -> tuple[Project, builtins.list[Archive]]:
        project = await self._projects.resolve(actor, project_name, conn=conn)
        async with reading(self._pool, conn) as reader:
            return project, await records.of_project(reader, project.id)

    async def find(
        self, actor: Actor, project_name: str, name: str, *, conn: Connection | None = None
    ) -> Archive:
        """A stored version by its listed name ("v3-app.zip") or number ("3", "v3")."""
        actor.require("read")
        return (await self._find(actor, project_name, name, conn))[1]

    async def _find(
        self, actor: Actor, project_name: str, name: str, conn: Connection | None
    ) -> tuple[Project, Archive]:
        match = VERSION_NAME.match(name) or re.match(r"^v?(\d{1,9})$", name)
        project, history = await self._history(actor, project_name, conn)
        for archive in history:
            if archive.status != "ready":
                continue
            if (match and archive.version == int(match.group(1))) or archive.name == name:
                return project, archive
        raise NotFoundError(f"{project_name} has no version {name[:60]!r}.")

    @records_refusals("archive.delete")
    async def delete(
        self, actor: Actor, project_name: str, name: str, *, conn: Connection | None = None
    ) -> Archive:
        """Delete a version, its row and its stored object. Needs "deploy"."""
        actor.require("deploy")
        project, archive = await self._find(actor, project_name, name, conn)
        async with transaction(self._pool, conn) as tx:
            await records.delete(tx, archive.id)
            await audit.record(
                tx,
                actor,
                "archive.delete",
                audit.Target("project", project.name, project.id, project.user_id),
                metadata={"archive": archive.name},
            )
        if archive.storage_key:
            await self._storage.delete(archive.storage_key)
        await self._projects.invalidate(project.user_id)
        return archive

    async def delete_project(
        self,
        actor: Actor,
        project_name: str,
        confirmation: str,
        *,
        conn: Connection | None = None,
    ) -> Project:
        """Delete a project with all its versions, from PostgreSQL and from storage."""
        project = await self._projects.delete(actor, project_name, confirmation, conn=conn)
        await self._storage.delete_prefix(f"{UPLOAD_PREFIX}{project.id}/")
        return project

    def open_reader(self, archive: Archive, offset: int = 0) -> ObjectReader:
        if not archive.storage_key:
            raise NotFoundError("This upload was refused: there is nothing to download.")
        return self._storage.open_reader(archive.storage_key, offset)

    async def stored_bytes(self, project_id: int, conn: Connection | None = None) -> int:
        """Bytes the project's accepted versions take in storage (for the panel: its disk on
        its plan, the deploy worker's and billing's usage); `conn`: in the caller's
        transaction (a plan change, under the project's lock)."""
        async with reading(self._pool, conn) as db:
            return await records.stored_bytes(db, [project_id])

    async def storage_key(self, archive_id: int) -> str | None:
        """Where a version is stored, by id (for the deploy worker, which acts for the panel);
        None once it is deleted."""
        async with reading(self._pool) as conn:
            return await records.storage_key(conn, archive_id)
