"""SFTP and scp: each user's projects as a small virtual tree, over the one upload path.

    /                       the user's projects, as directories; `mkdir /name` creates one
    /<project>/             its stored versions, as files named like "v3-app.zip"
    /<project>/<name>       `get` streams a version from storage, `rm` deletes it;
                            `put` of any archive name is a new upload (`core.archives.service`),
                            checked and stored as the next version when the file is closed
    /billing/               the user's invoices, read-only: "2026-12.txt" and "2026-12.html"
                            for each month invoiced ("billing" is never a project's name;
                            the root lists it once there is an invoice)

Nothing here touches the server's file system: every path is parsed into at most two names
and answered from the core services, with the logged-in user's id on every call (`..` goes
up to the root and no further, as in a chroot). Anything else (rename, links, chmod, a path
climbing above the root, `//x`, deeper paths, writes outside a project) is "permission
denied"; another user's project and a missing one give the same "no such file". Visitors (an
SSH name without an account) get "permission denied" for everything.

One path serves every client: the `sftp` subsystem (OpenSSH `sftp`, and `scp` in its default
SFTP mode) runs asyncssh's SFTP handler over `PanelSFTPServer`, and legacy `scp -O` runs
asyncssh's scp server over the same class. An upload must arrive in order (each write at the
offset where the previous one ended); it is finished when the client closes the file, and
aborted (nothing stored, no version) when the client leaves or the session ends first.

OpenSSH's clients print only a fixed text per SFTP status ("Failure"), never the server's
message: so the reasons (a refused archive, the quota, a bad name) also go to the channel's
stderr, which `sftp` and `scp` show on the user's terminal. Legacy scp carries them in-band.
asyncssh ends an SFTP session without an exit status, which makes OpenSSH 9's `scp` exit 1
although the transfer worked: the session sends exit status 0 when it ends.

Routing: asyncssh only offers SFTP and scp with its own stream sessions, which would replace
the dashboard's session for every channel. `ChannelRouter` keeps the dashboard session and
hands a channel to a `TransferSession` only when it asks for the `sftp` subsystem or runs
`scp ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import asyncssh
from asyncssh.connection import SSHConnection
from asyncssh.constants import (
    ACE4_APPEND_DATA,
    ACE4_READ_DATA,
    ACE4_WRITE_DATA,
    EXTENDED_DATA_STDERR,
    FILEXFER_TYPE_DIRECTORY,
    FILEXFER_TYPE_REGULAR,
    FXF_APPEND,
    FXF_APPEND_DATA,
    FXF_READ,
    FXF_WRITE,
)
from asyncssh.scp import run_scp_server
from asyncssh.sftp import run_sftp_server
from asyncssh.stream import SSHServerStreamSession

from core.actor import Actor
from core.archives.service import Archive, ArchiveService, Upload
from core.archives.storage import ObjectReader
from core.billing.invoice_render import as_html, as_text
from core.billing.invoices import Invoice
from core.errors import (
    ConflictError,
    NotFoundError,
    PanelError,
    PermissionDenied,
    QuotaExceededError,
)
from core.projects.service import Project, ProjectService

if TYPE_CHECKING:
    from core.identity.accounts import User
    from core.services import Services
    from sshd.channel_login import ChannelLogin
    from sshd.server import Login

log = logging.getLogger(__name__)

# The highest SFTP version offered: v4+ clients (asyncssh's, for one) then get statuses such as
# "quota exceeded" as they are; OpenSSH speaks v3, where asyncssh sends them as "failure".
SFTP_VERSION = 6
# Reads are served from storage in blocks of this size (one thread hop each), and never larger
# than asyncssh's advertised maximum per request, whatever a client asks for.
READ_BLOCK = 256 * 1024
MAX_READ = 4 * 1024 * 1024
MAX_PATH = 1024
# What asyncssh is given of a socket read at a time (see `receive_in_slices`).
RECEIVE_SLICE = 128 * 1024

DENIED = "Permission denied"
NO_SUCH_FILE = "No such file or directory"
NOT_SEQUENTIAL = "uploads must be sequential"
INTERNAL = "The panel could not do this right now. Please try again in a moment."
VISITOR = "File transfers need an account. Sign up first: ssh -t {address}"
TOKEN_NEEDS_DEPLOY = (
    "This access token or deploy key cannot transfer files: that needs the 'deploy' scope."
)
RMDIR_REFUSED = (
    "Delete projects in the dashboard, where you confirm by typing the project's name: "
    "ssh -t {address}"
)

DIRECTORY_MODE = stat.S_IFDIR | 0o755
FILE_MODE = stat.S_IFREG | 0o644
READ_ONLY_DIRECTORY_MODE = stat.S_IFDIR | 0o555
READ_ONLY_FILE_MODE = stat.S_IFREG | 0o444
# The invoices' directory; a reserved project name, so no project can hide it or be hidden.
BILLING = "billing"
INVOICE_FORMATS = {"txt": as_text, "html": as_html}


class TransferHost(Protocol):
    """What a transfer session needs from the server."""

    services: Services
    transfers: set[TransferSession]

    @property
    def address(self) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...


# -- paths --------------------------------------------------------------------------------------


def parse_path(raw: bytes) -> tuple[str, ...]:
    """The names in a client's path: () for the root, (project,), (project, file).

    Relative paths start at the root. "." parts are dropped and ".." goes up from a project
    to the root, as in a chroot: `/shop/..` is `/` and `/shop/../diary` is `/diary` (so
    `cd ..` works). Nothing is above the root: `/..` is `/`, but a path that climbs above it
    and goes on (`/../etc/passwd`), ".." after a file, empty parts ("//x"), NUL, backslashes,
    text that is not UTF-8 and over-long paths are refused. Nothing is resolved against
    anything but this tree, so there is nothing to escape to.
    """
    if len(raw) > MAX_PATH:
        raise asyncssh.SFTPPermissionDenied(DENIED)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise asyncssh.SFTPPermissionDenied(DENIED) from None
    if "\0" in text or "\\" in text:
        raise asyncssh.SFTPPermissionDenied(DENIED)
    body = text[1:] if text.startswith("/") else text
    if body.endswith("/"):
        body = body[:-1]
    if body in ("", "."):
        return ()
    names: list[str] = []
    above_root = False  # a ".." was taken at the root: only more of "." and ".." may follow
    for part in body.split("/"):
        if part == ".":
            continue
        if part == "":
            raise asyncssh.SFTPPermissionDenied(DENIED)
        if part == "..":
            if len(names) > 1:  # after a file (or below a project): not a directory
                raise asyncssh.SFTPPermissionDenied(DENIED)
            if names:
                names.pop()
            else:
                above_root = True
            continue
        if above_root:
            raise asyncssh.SFTPPermissionDenied(DENIED)
        names.append(part)
    return tuple(names)


def format_path(names: tuple[str, ...]) -> str:
    return "/" + "/".join(names)


def _timestamp(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else int(time.time())


# -- open files ---------------------------------------------------------------------------------


class _UploadFile:
    """An archive arriving through one SFTP handle (or one scp file)."""

    def __init__(self, upload: Upload, project: str, filename: str, attrs: asyncssh.SFTPAttrs):
        self.upload = upload
        self.project = project
        self.filename = filename
        self.attrs = attrs
        self.received = 0
        self.error: asyncssh.SFTPError | None = None
        self.done = False

    @property
    def where(self) -> str:
        return f"{self.project}/{self.filename}"


class _DownloadFile:
    """A stored version read through one handle: sequential reads stream from one reader."""

    def __init__(self, archives: ArchiveService, archive: Archive, attrs: asyncssh.SFTPAttrs):
        self._archives = archives
        self.archive = archive
        self.attrs = attrs
        self.size = archive.size
        self._reader: ObjectReader | None = None
        self._position = 0  # where the next byte of _pending sits in the object
        self._pending = bytearray()
        self._eof = False

    async def read(self, offset: int, size: int) -> bytes:
        size = min(size, MAX_READ)
        if size <= 0 or offset >= self.size:
            return b""
        if self._reader is None or offset != self._position:
            await self._open_at(offset)
        reader = self._reader
        assert reader is not None
        while len(self._pending) < size and not self._eof:
            chunk = await reader.read(max(READ_BLOCK, size - len(self._pending)))
            if not chunk:
                self._eof = True
                break
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        self._position += len(data)
        return data

    async def _open_at(self, offset: int) -> None:
        """A new reader from `offset` (the first read, or a client that jumps)."""
        await self.close()
        self._reader = self._archives.open_reader(self.archive, offset)
        self._position = offset
        self._eof = False

    def seek(self, offset: int, whence: int = 0) -> int:
        """For asyncssh's `ranges` extension: the whole file is data, no holes."""
        if whence == os.SEEK_DATA:
            if offset >= self.size:
                raise OSError(errno.ENXIO, "No more data")
            return offset
        if whence == os.SEEK_HOLE:
            return self.size
        raise OSError(errno.EINVAL, "Invalid seek")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        self._pending = bytearray()
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.aclose()


class _InvoiceFile:
    """An invoice rendered once, read through one handle."""

    def __init__(self, name: str, content: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.name = name
        self.content = content
        self.attrs = attrs

    def read(self, offset: int, size: int) -> bytes:
        return self.content[offset : offset + min(size, MAX_READ)]


def invoice_files(invoice: Invoice, username: str) -> dict[str, bytes]:
    """The files one invoice appears as: "2026-12.txt" and "2026-12.html"."""
    return {
        f"{invoice.label}.{suffix}": render(invoice, username).encode()
        for suffix, render in INVOICE_FORMATS.items()
    }


# -- the SFTP server ----------------------------------------------------------------------------


class PanelSFTPServer(asyncssh.SFTPServer):
    """The virtual tree of one logged-in user, for one SFTP or scp session."""

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        services: Services,
        login: Login,
        *,
        address: str,
        client_gone: Callable[[], bool],
        in_band_errors: bool,
        drain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(chan)
        self._services = services
        self._user: User | None = login.user
        self._ssh_username = login.ssh_username
        # A token's or deploy key's login sees only what it may: its projects, no invoices.
        self._token_actor = login.limited
        self._address = address
        self._client_gone = client_gone
        self._drain = drain
        # Legacy scp sends each error to the client itself: no copy on stderr then.
        self._in_band_errors = in_band_errors
        # One id on every audit entry this transfer session writes, with the client's address.
        self._request_id = uuid.uuid4().hex[:16]
        peer = chan.get_extra_info("peername")
        self._client_address = str(peer[0]) if peer else None
        self._visitor_told = False
        self._stored_here: set[tuple[str, ...]] = set()  # (project, name) uploaded in this session
        self.uploads: set[_UploadFile] = set()
        self.downloads: set[_DownloadFile] = set()

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _projects(self) -> ProjectService:
        return self._services.projects

    @property
    def _archives(self) -> ArchiveService:
        return self._services.archives

    def _actor(self) -> Actor:
        if self._user is None:
            if not self._visitor_told:
                self._visitor_told = True
                self._tell(VISITOR.format(address=self._address))
            raise asyncssh.SFTPPermissionDenied(DENIED)
        actor = self._token_actor if self._token_actor is not None else Actor.for_user(self._user)
        # The tree is the account's own: an admin's `admin` token reaches no other tenant's
        # project here (admin actions go through `admin` commands and the admin app, audited).
        actor = dataclasses.replace(actor, scopes=actor.scopes - {"admin"})
        return actor.acting_from(
            "sftp", source_address=self._client_address, request_id=self._request_id
        )

    def _tell(self, text: str) -> None:
        """A line on the client's terminal (the channel's stderr)."""
        chan = self.channel
        if chan.is_closing():
            return
        with contextlib.suppress(Exception):
            chan.write_stderr(f"ghst: {text}\n".encode("utf-8", "replace"))

    def _fail(self, where: str, error: BaseException, *, tell: bool = True) -> asyncssh.SFTPError:
        """The SFTP status for a core error; its reason also on stderr when `tell`."""
        if isinstance(error, asyncssh.SFTPError):
            return error
        if isinstance(error, PanelError):
            message = error.message
            result: asyncssh.SFTPError
            if isinstance(error, QuotaExceededError):
                result = asyncssh.SFTPQuotaExceeded(message)
            elif isinstance(error, NotFoundError):
                result = asyncssh.SFTPNoSuchFile(message)
            elif isinstance(error, PermissionDenied):
                result = asyncssh.SFTPPermissionDenied(message)
            elif isinstance(error, ConflictError):
                result = asyncssh.SFTPFileAlreadyExists(message)
            else:  # ValidationError (a refused archive, a bad name), UnavailableError, ...
                result = asyncssh.SFTPFailure(message)
        else:
            log.error("SFTP %s failed for %s", where, self._who(), exc_info=error)
            message = INTERNAL
            result = asyncssh.SFTPFailure(message)
        if tell and not self._in_band_errors:
            self._tell(f"{where}: {message}")
        return result

    def _who(self) -> str:
        return self._user.username if self._user else f"visitor {self._ssh_username!r}"

    def _directory_attrs(self, moment: datetime | None) -> asyncssh.SFTPAttrs:
        when = _timestamp(moment)
        return self._attrs(FILEXFER_TYPE_DIRECTORY, DIRECTORY_MODE, 0, when, nlink=2)

    def _file_attrs(self, archive: Archive) -> asyncssh.SFTPAttrs:
        when = _timestamp(archive.created_at)
        return self._attrs(FILEXFER_TYPE_REGULAR, FILE_MODE, archive.size, when, nlink=1)

    def _attrs(
        self, kind: int, mode: int, size: int, when: int, *, nlink: int
    ) -> asyncssh.SFTPAttrs:
        owner = self._user.username if self._user else self._ssh_username
        return asyncssh.SFTPAttrs(
            type=kind,
            size=size,
            uid=0,
            gid=0,
            owner=owner,
            group=owner,
            permissions=mode,
            atime=when,
            mtime=when,
            nlink=nlink,
        )

    def format_user(self, uid: int | None) -> str:
        return self._user.username if self._user else self._ssh_username

    def format_group(self, gid: int | None) -> str:
        return self.format_user(gid)

    async def _project(self, actor: Actor, name: str) -> Project:
        try:
            return await self._projects.get(actor, name)
        except NotFoundError as error:  # clients look paths up all the time: no chatter
            raise self._fail(name, error, tell=False) from None
        except Exception as error:
            raise self._fail(name, error) from None

    async def _versions(self, actor: Actor, project: str) -> list[Archive]:
        try:
            archives = await self._archives.list(actor, project)
        except NotFoundError as error:
            raise self._fail(project, error, tell=False) from None
        except Exception as error:
            raise self._fail(project, error) from None
        return [archive for archive in archives if archive.status == "ready"]

    async def _version(self, actor: Actor, project: str, name: str) -> Archive:
        """The stored version listed as `name` exactly (not "3" or "v3", which `find` takes)."""
        for archive in await self._versions(actor, project):
            if archive.name == name:
                return archive
        raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)

    # -- attributes ---------------------------------------------------------------------------

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        names = parse_path(path)
        actor = self._actor()
        if not names:
            return self._directory_attrs(None)
        if names[0] == BILLING:
            return await self._billing_stat(actor, names)
        if len(names) == 1:
            project = await self._project(actor, names[0])
            return self._directory_attrs(project.last_upload_at or project.created_at)
        if len(names) == 2:
            return self._file_attrs(await self._version(actor, names[0], names[1]))
        raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self.stat(path)

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        if isinstance(file_obj, _DownloadFile | _InvoiceFile):
            return file_obj.attrs
        if isinstance(file_obj, _UploadFile):
            attrs = file_obj.attrs
            attrs.size = file_obj.received
            return attrs
        raise asyncssh.SFTPPermissionDenied(DENIED)

    async def realpath(self, path: bytes) -> bytes:
        names = parse_path(path)
        self._actor()
        return format_path(names).encode()

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        names = parse_path(path)
        actor = self._actor()
        if not names:
            projects = await self._list_projects(actor)
            here = self._directory_attrs(None)
            yield asyncssh.SFTPName(b".", attrs=here)
            yield asyncssh.SFTPName(b"..", attrs=here)
            for project in projects:
                moment = project.last_upload_at or project.created_at
                yield asyncssh.SFTPName(project.name.encode(), attrs=self._directory_attrs(moment))
            if await self._invoices(actor):  # always reachable; listed once there is one
                yield asyncssh.SFTPName(BILLING.encode(), attrs=self._billing_attrs())
            return
        if names == (BILLING,):
            if actor.kind == "token":  # invoices are the account's, not a token's
                raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)
            yield asyncssh.SFTPName(b".", attrs=self._billing_attrs())
            yield asyncssh.SFTPName(b"..", attrs=self._directory_attrs(None))
            for invoice in await self._invoices(actor):
                for name, content in invoice_files(invoice, self._username).items():
                    attrs = self._invoice_attrs(invoice, len(content))
                    yield asyncssh.SFTPName(name.encode(), attrs=attrs)
            return
        if len(names) != 1:
            raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)
        project = await self._project(actor, names[0])
        versions = await self._versions(actor, names[0])
        yield asyncssh.SFTPName(
            b".", attrs=self._directory_attrs(project.last_upload_at or project.created_at)
        )
        yield asyncssh.SFTPName(b"..", attrs=self._directory_attrs(None))
        for archive in versions:
            yield asyncssh.SFTPName(archive.name.encode(), attrs=self._file_attrs(archive))

    # -- invoices (read-only) -------------------------------------------------------------

    @property
    def _username(self) -> str:
        return self._user.username if self._user else self._ssh_username

    def _billing_attrs(self) -> asyncssh.SFTPAttrs:
        return self._attrs(
            FILEXFER_TYPE_DIRECTORY, READ_ONLY_DIRECTORY_MODE, 0, int(time.time()), nlink=2
        )

    def _invoice_attrs(self, invoice: Invoice, size: int) -> asyncssh.SFTPAttrs:
        when = _timestamp(invoice.issued_at)
        return self._attrs(FILEXFER_TYPE_REGULAR, READ_ONLY_FILE_MODE, size, when, nlink=1)

    async def _invoices(self, actor: Actor) -> list[Invoice]:
        if actor.kind == "token":  # invoices are the account's, not a project's
            return []
        try:
            return await self._services.invoices.list(actor)
        except Exception as error:
            raise self._fail(BILLING, error) from None

    async def _invoice_file(self, actor: Actor, name: str) -> tuple[Invoice, bytes]:
        """The actor's own invoice file `name` ("2026-12.html"); anything else: no such file."""
        label, dot, suffix = name.rpartition(".")
        if not dot or suffix not in INVOICE_FORMATS or actor.kind == "token":
            raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)
        try:
            invoice = await self._services.invoices.get(actor, label)
        except NotFoundError:
            raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE) from None
        except Exception as error:
            raise self._fail(f"{BILLING}/{name}", error) from None
        return invoice, invoice_files(invoice, self._username)[name]

    async def _billing_stat(self, actor: Actor, names: tuple[str, ...]) -> asyncssh.SFTPAttrs:
        if actor.kind == "token":
            raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)
        if len(names) == 1:
            return self._billing_attrs()
        if len(names) == 2:
            invoice, content = await self._invoice_file(actor, names[1])
            return self._invoice_attrs(invoice, len(content))
        raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)

    async def _list_projects(self, actor: Actor) -> list[Project]:
        try:
            return await self._projects.list(actor)
        except Exception as error:
            raise self._fail("/", error) from None

    # -- files --------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        writing = bool(pflags & FXF_WRITE)
        reading = bool(pflags & FXF_READ) or not writing
        if pflags & FXF_APPEND or (reading and writing):
            parse_path(path)
            self._actor()
            raise asyncssh.SFTPPermissionDenied(DENIED)
        return await (self._open_upload(path) if writing else self._open_download(path))

    async def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> object:
        writing = bool(desired_access & (ACE4_WRITE_DATA | ACE4_APPEND_DATA))
        reading = bool(desired_access & ACE4_READ_DATA) or not writing
        if desired_access & ACE4_APPEND_DATA or flags & FXF_APPEND_DATA or (reading and writing):
            parse_path(path)
            self._actor()
            raise asyncssh.SFTPPermissionDenied(DENIED)
        return await (self._open_upload(path) if writing else self._open_download(path))

    async def _open_download(self, path: bytes) -> _DownloadFile | _InvoiceFile:
        names = parse_path(path)
        actor = self._actor()
        if len(names) != 2:
            if len(names) < 2:  # the root or a project: a directory
                raise asyncssh.SFTPPermissionDenied(DENIED)
            raise asyncssh.SFTPNoSuchFile(NO_SUCH_FILE)
        if names[0] == BILLING:
            invoice, content = await self._invoice_file(actor, names[1])
            return _InvoiceFile(names[1], content, self._invoice_attrs(invoice, len(content)))
        archive = await self._version(actor, names[0], names[1])
        download = _DownloadFile(self._archives, archive, self._file_attrs(archive))
        self.downloads.add(download)
        return download

    async def _open_upload(self, path: bytes) -> _UploadFile:
        names = parse_path(path)
        actor = self._actor()
        if names and names[0] == BILLING:  # invoices are read-only
            raise asyncssh.SFTPPermissionDenied(DENIED)
        if len(names) == 1 and path.endswith(b"/"):
            # `put app.zip nope/`: the client could not stat "nope" as a directory, so it
            # opens the directory itself. Say why, the same way for a missing project and
            # another user's.
            try:
                await self._projects.get(actor, names[0])
            except Exception as error:
                raise self._fail(names[0], error) from None
        if len(names) != 2:
            raise asyncssh.SFTPPermissionDenied(DENIED)
        project, filename = names
        where = f"{project}/{filename}"
        try:
            upload = await self._archives.begin_upload(actor, project, filename)
        except Exception as error:
            raise self._fail(where, error) from None
        attrs = self._attrs(FILEXFER_TYPE_REGULAR, FILE_MODE, 0, int(time.time()), nlink=1)
        handle = _UploadFile(upload, project, upload.filename, attrs)
        self.uploads.add(handle)
        return handle

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        if isinstance(file_obj, _InvoiceFile):
            return file_obj.read(offset, size)
        if not isinstance(file_obj, _DownloadFile):
            raise asyncssh.SFTPPermissionDenied(DENIED)
        if self._drain is not None:
            # asyncssh queues every answer without waiting for the client to take it: a client
            # that asks for data faster than it reads would grow the queue without bound.
            with contextlib.suppress(Exception):
                await self._drain()
        try:
            return await file_obj.read(offset, size)
        except Exception as error:
            await file_obj.close()
            raise self._fail(file_obj.archive.name, error) from None

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _UploadFile):
            raise asyncssh.SFTPPermissionDenied(DENIED)
        if file_obj.error is not None:
            raise file_obj.error
        if file_obj.done:
            raise asyncssh.SFTPFailure(NOT_SEQUENTIAL)
        if offset != file_obj.received:
            await self._drop(file_obj)
            if not self._in_band_errors:
                self._tell(f"{file_obj.where}: {NOT_SEQUENTIAL}")
            file_obj.error = asyncssh.SFTPFailure(NOT_SEQUENTIAL)
            raise file_obj.error
        try:
            await file_obj.upload.write(data)
        except BaseException as error:
            await self._drop(file_obj)
            if not isinstance(error, Exception):
                raise
            file_obj.error = self._fail(file_obj.where, error)
            raise file_obj.error from None
        file_obj.received += len(data)
        return len(data)

    async def close(self, file_obj: object) -> None:
        if isinstance(file_obj, _DownloadFile):
            self.downloads.discard(file_obj)
            await file_obj.close()
            return
        if not isinstance(file_obj, _UploadFile):
            return
        self.uploads.discard(file_obj)
        if file_obj.error is not None:
            raise file_obj.error
        if file_obj.done:
            return
        if self._client_gone():
            # Closed by the session ending, not by the client: the file may be incomplete.
            await self._drop(file_obj)
            log.info("upload of %s by %s aborted: the client left", file_obj.where, self._who())
            return
        file_obj.done = True
        try:
            archive = await file_obj.upload.finish()
        except BaseException as error:
            await self._drop(file_obj)
            if not isinstance(error, Exception):
                raise
            log.info("upload of %s by %s refused: %s", file_obj.where, self._who(), error)
            file_obj.error = self._fail(file_obj.where, error)
            raise file_obj.error from None
        log.info(
            "%s uploaded %s/%s (%d bytes)",
            self._who(),
            file_obj.project,
            archive.name,
            archive.size,
        )
        self._stored_here.add((file_obj.project, file_obj.filename))
        self._tell(f"{file_obj.project}: stored {file_obj.filename} as {archive.name}")

    async def _drop(self, file_obj: _UploadFile) -> None:
        file_obj.done = True
        self.uploads.discard(file_obj)
        await file_obj.upload.abort()

    async def abort_all(self) -> None:
        """Drop what was not finished when the session ends (however it ends)."""
        for upload in list(self.uploads):
            await self._drop(upload)
        for download in list(self.downloads):
            self.downloads.discard(download)
            await download.close()

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        # `put -p` / `scp -p` set the mode and times of the file they upload: nothing to keep.
        if not isinstance(file_obj, _UploadFile):
            raise asyncssh.SFTPPermissionDenied(DENIED)

    async def fsync(self, file_obj: object) -> None:
        if not isinstance(file_obj, _UploadFile):
            raise asyncssh.SFTPPermissionDenied(DENIED)

    # -- the tree -----------------------------------------------------------------------------

    async def remove(self, path: bytes) -> None:
        names = parse_path(path)
        actor = self._actor()
        if len(names) != 2 or names[0] == BILLING:
            raise asyncssh.SFTPPermissionDenied(DENIED)
        project, name = names
        archive = await self._version(actor, project, name)
        try:
            await self._archives.delete(actor, project, archive.name)
        except Exception as error:
            raise self._fail(f"{project}/{name}", error) from None
        log.info("%s deleted %s/%s", self._who(), project, archive.name)

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        names = parse_path(path)
        actor = self._actor()
        if len(names) != 1 or names[0] == BILLING:
            raise asyncssh.SFTPPermissionDenied(DENIED)
        try:
            # mkdir cannot ask for a plan: the free one (an account's second free project is
            # refused with the reason; the dashboard offers the paid plans with their prices).
            project, _plan = await self._services.subscriptions.create_project(actor, names[0])
        except Exception as error:
            raise self._fail(names[0], error) from None
        log.info("%s created project %s", self._who(), project.name)

    async def rmdir(self, path: bytes) -> None:
        # The same answer whatever the name: it says nothing about other users' projects.
        parse_path(path)
        self._actor()
        if not self._in_band_errors:
            self._tell(RMDIR_REFUSED.format(address=self._address))
        raise asyncssh.SFTPPermissionDenied(RMDIR_REFUSED.format(address=self._address))

    # -- refused ------------------------------------------------------------------------------

    def _refuse(self, *paths: bytes) -> NoReturn:
        for path in paths:
            parse_path(path)
        self._actor()
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        # Legacy `scp -p` sets the mode and times of the file it just uploaded, by the name
        # it uploaded: accepted and not kept. Any other setstat (chmod, touch) is refused.
        if parse_path(path) in self._stored_here:
            return
        self._refuse(path)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse(path)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse(oldpath, newpath)

    def readlink(self, path: bytes) -> bytes:
        self._refuse(path)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def fstatvfs(self, file_obj: object) -> asyncssh.SFTPVFSAttrs:
        raise asyncssh.SFTPPermissionDenied(DENIED)

    def exit(self) -> None:
        # asyncssh closes an SFTP channel without an exit status: OpenSSH's scp then exits 1.
        # (Legacy scp already sent its own; a second one is not sent.)
        with contextlib.suppress(Exception):
            self.channel.exit(0)


# -- sessions -----------------------------------------------------------------------------------


class TransferSession(SSHServerStreamSession[bytes]):
    """A channel running SFTP or scp for one login, until the client or the server ends it.

    A user's transfer runs under its connection's login (a row of `sessions`), checked when
    the channel starts, before anything is served: "log out everywhere", "log out other
    sessions", a password change and blocking the account revoke it, and the server's watcher
    then ends the transfer like a dashboard session (`jti`) and closes the connection.
    """

    def __init__(self, host: TransferHost, login: Login, connection: ChannelLogin) -> None:
        super().__init__(None, None, SFTP_VERSION, allow_scp=False)
        self._host = host
        self._login = login
        self._connection = connection
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._client_gone = False
        self._ending = False
        self._task: asyncio.Task[None] | None = None
        self.server: PanelSFTPServer | None = None
        # The transfer's login session; None for visitors or while it could not be opened.
        self.jti: uuid.UUID | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:  # type: ignore[override]
        self._channel = chan
        super().connection_made(chan)
        receive_in_slices(chan.get_connection())

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        return True  # `ssh -t host scp ...`: harmless, the PTY is not used

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return is_scp_command(command)

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    @property
    def user_id(self) -> int | None:
        return self._login.user.id if self._login.user else None

    @property
    def by_token(self) -> bool:
        return self._login.limited is not None

    def session_started(self) -> None:
        chan = self._channel
        assert chan is not None
        stdin = asyncssh.SSHReader[bytes](self, chan)
        stdout = asyncssh.SSHWriter[bytes](self, chan)
        stderr = asyncssh.SSHWriter[bytes](self, chan, EXTENDED_DATA_STDERR)
        command = chan.get_command()
        legacy_scp = chan.get_subsystem() != "sftp"
        server = PanelSFTPServer(
            chan,
            self._host.services,
            self._login,
            address=self._host.address,
            client_gone=self.client_gone,
            in_band_errors=legacy_scp,
            drain=stdout.drain,
        )
        self.server = server
        handler: Any
        if legacy_scp:
            handler = run_scp_server(server, command or "", stdin, stdout, stderr)
        else:
            handler = run_sftp_server(server, stdin, stdout, SFTP_VERSION)
        self._host.transfers.add(self)
        self._task = self._host.spawn(self._serve(handler, server), name="ssh-transfer")
        self._connection.track(self._task, chan)

    async def _serve(self, handler: Any, server: PanelSFTPServer) -> None:
        try:
            try:
                session = await self._connection.channel_login()
            except PanelError as error:
                if handler is not None:
                    handler.close()  # never started: nothing was served
                self.end(error.message)
                return
            limited = self._login.limited
            if limited is not None and not limited.may("deploy"):
                if handler is not None:
                    handler.close()
                self.end(TOKEN_NEEDS_DEPLOY)
                return
            self.jti = session.jti if session is not None else None
            if handler is not None:
                await handler
        finally:
            self._host.transfers.discard(self)
            # Normally nothing is left: the handler closed every file when it ended.
            self._client_gone = True
            await server.abort_all()
            self.jti = None

    def client_gone(self) -> bool:
        """True once the client sent EOF or the channel closed: open files are unfinished."""
        return self._client_gone or self._ending

    def eof_received(self) -> bool:
        self._client_gone = True
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_gone = True
        super().connection_lost(exc)

    def end(self, reason: str) -> None:
        """The server ends this session: unfinished uploads are dropped, the client told."""
        chan = self._channel
        self._ending = True
        if chan is None or chan.is_closing():
            return
        with contextlib.suppress(Exception):
            chan.write_stderr(f"ghst: {reason}\n".encode())
            chan.exit(1)

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._task)


def receive_in_slices(conn: SSHConnection) -> None:
    """Hand what the socket delivers to asyncssh in slices of at most RECEIVE_SLICE bytes.

    asyncssh keeps received bytes in one `bytes` object and, for every SSH packet, copies what
    follows the packet into a new one: asyncio reads up to 256 KiB at once, which then costs
    ~9 copies of each byte (8 packets of 32 KiB, two slices each); fed 128 KiB at a time, ~5.
    Smaller slices copy less but each one resets asyncssh's keepalive timer. Measured on 1 GiB
    uploads: ~10% less CPU on the event loop, which is what limits their speed. asyncssh
    handles each slice exactly as it would the rest of a larger read. Done once per
    connection, by its first transfer channel.
    """
    if getattr(conn, "_ghst_receive_in_slices", False):
        return
    receive = conn.data_received

    def data_received(data: bytes, datatype: asyncssh.DataType = None) -> None:
        if len(data) <= RECEIVE_SLICE:
            receive(data, datatype)
            return
        view = memoryview(data)
        for start in range(0, len(data), RECEIVE_SLICE):
            receive(view[start : start + RECEIVE_SLICE], datatype)  # type: ignore[arg-type]

    # The transport looks the method up on every read: the connection's own attribute wins.
    setattr(conn, "data_received", data_received)  # noqa: B010
    setattr(conn, "_ghst_receive_in_slices", True)  # noqa: B010


def is_scp_command(command: str) -> bool:
    return command.startswith("scp ")


class ChannelRouter(asyncssh.SSHServerSession[bytes]):
    """A session channel: the dashboard/command session, unless it asks for SFTP or scp."""

    def __init__(
        self,
        shell: asyncssh.SSHServerSession[bytes],
        transfer: Callable[[], TransferSession],
    ) -> None:
        self._shell = shell
        self._make_transfer = transfer
        self._session: asyncssh.SSHServerSession[bytes] = shell
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None

    @property
    def session(self) -> asyncssh.SSHServerSession[bytes]:
        return self._session

    def _switch_to_transfer(self) -> asyncssh.SSHServerSession[bytes]:
        if self._session is self._shell and self._chan is not None:
            transfer = self._make_transfer()
            self._session = transfer
            # The dashboard session never started: nothing of it needs undoing.
            self._shell.connection_lost(None)
            transfer.connection_made(self._chan)
        return self._session

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._shell.connection_made(chan)

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.connection_lost(exc)

    def session_started(self) -> None:
        self._session.session_started()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._session.data_received(data, datatype)

    def eof_received(self) -> bool:
        return self._session.eof_received()

    def pause_writing(self) -> None:
        self._session.pause_writing()

    def resume_writing(self) -> None:
        self._session.resume_writing()

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        return self._session.pty_requested(term_type, term_size, term_modes)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._session.terminal_size_changed(width, height, pixwidth, pixheight)

    def shell_requested(self) -> bool:
        return self._session.shell_requested()

    def exec_requested(self, command: str) -> bool:
        if is_scp_command(command):
            return self._switch_to_transfer().exec_requested(command)
        return self._session.exec_requested(command)

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem == "sftp":
            return self._switch_to_transfer().subsystem_requested(subsystem)
        return self._session.subsystem_requested(subsystem)

    def break_received(self, msec: int) -> bool:
        return self._session.break_received(msec)

    def signal_received(self, signal: str) -> None:
        self._session.signal_received(signal)

    def soft_eof_received(self) -> None:
        self._session.soft_eof_received()
