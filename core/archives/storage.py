"""Object storage for archive versions: one interface, two adapters.

    ObjectStorage (Protocol)
    ├── LocalDirectoryStorage   files under one directory (development, a single host)
    └── S3Storage               one S3 bucket (MinIO, AWS; moto in the tests)

An upload streams through a `StorageWriter`: `write` as bytes arrive, then `complete` or
`abort`. Memory stays bounded whatever the object's size: S3 parts (16 MiB by default) go up
as multipart uploads with at most two parts in flight, and `write` waits while both are
uploading; the local adapter writes to a temporary file under `root/.incoming` and renames it
into place on `complete`. An aborted writer leaves nothing behind: no object, no temporary file,
no pending multipart upload (`pending_uploads` shows what would be orphaned). What a
crashed process left behind, `abort_stale_uploads` removes.

Reading is either streamed (`open_reader`, for downloads) or random access (`open_seekable`, a
synchronous seekable file for zipfile/tarfile running in a thread; on S3 it does ranged GETs).

Blocking work (boto3 calls, file IO) runs on a small thread pool owned by each adapter, never on
the event loop. A storage backend that cannot be reached raises `UnavailableError`; one that
refuses the panel's credentials or lacks its bucket raises `StorageRefusedError` (an
`UnavailableError` whose message says so, for an administrator to fix); a bad key raises
`ValidationError`; a missing object raises `NotFoundError` when opened for reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import io
import logging
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import quote, unquote

import boto3
import botocore.config
import botocore.exceptions

from core.errors import NotFoundError, UnavailableError, ValidationError

T = TypeVar("T")

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts in one multipart upload
DEFAULT_MAX_IN_FLIGHT = 2
READ_CHUNK = 1 * MiB  # what one `ObjectReader` iteration yields at most
READ_AHEAD = 1 * MiB  # the buffer of `open_seekable` on S3: one ranged GET fills it
MAX_RANGE = 8 * MiB  # at most this much per ranged GET, even for a larger read()
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # a file name's limit on Linux file systems
LOCAL_WRITE_BUFFER = 4 * MiB  # local writes are gathered into this much before a thread hop
LOCAL_WRITEBACK = 32 * MiB  # how often a local upload asks the kernel to start writing to disk
LOCAL_DIRECT_IO = True  # local uploads bypass the page cache where the file system allows it
DIRECT_IO_BLOCK = 4096  # O_DIRECT writes are multiples of this, at offsets that are too

STORAGE_DOWN = "Storage is not reachable right now. Please try again in a moment."
STORAGE_REFUSED = (
    "The archive store refused the panel's credentials, so uploads and downloads cannot work "
    "until an administrator fixes the panel's S3 settings (access key, secret, permissions)."
)
CERTIFICATE_UNTRUSTED = (
    "The archive store's TLS certificate is not trusted, so uploads and downloads cannot work "
    "until an administrator fixes the panel's S3 settings (GHST_S3_CA_BUNDLE)."
)
STORAGE_DAMAGED = (
    "Part of the upload arrived damaged at the archive store, which refused it: nothing was "
    "stored. Please upload it again."
)
BUCKET_MISSING = (
    "The archive store's bucket {bucket!r} does not exist, so uploads and downloads cannot work "
    "until an administrator creates it or fixes the panel's S3 settings."
)

log = logging.getLogger(__name__)

# Clean-ups that must finish although their caller was cancelled (held so they are not GC'd).
_BACKGROUND: set[asyncio.Future[None]] = set()

# Where the local adapter keeps uploads in progress; never a valid first key segment.
INCOMING = ".incoming"


class StorageRefusedError(UnavailableError):
    """S3 answers, but refuses the panel (credentials, permissions) or lacks its bucket."""

    title = "Storage misconfigured"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    modified: float  # when it was stored, seconds since the epoch (the storage's clock)


class StorageWriter(Protocol):
    """One object being written. Abortable at any point, any number of times."""

    @property
    def key(self) -> str: ...

    @property
    def bytes_written(self) -> int: ...

    async def write(self, data: bytes) -> None:
        """Append `data`; waits while the writer's bounded buffers are full."""
        ...

    async def complete(self) -> StoredObject:
        """Make the object visible under its key. Calling it again returns the same result."""
        ...

    async def abort(self) -> None:
        """Drop everything written. Harmless after `complete` (the object stays) or twice."""
        ...


class ObjectStorage(Protocol):
    async def prepare(self) -> None:
        """Create what must exist before the first upload (the directory, the bucket)."""
        ...

    async def open_writer(self, key: str) -> StorageWriter: ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix` (not empty); how many went."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def list_objects(self, prefix: str) -> list[ListedObject]:
        """The completed objects whose key starts with `prefix` (not empty), sorted by key."""
        ...

    def open_reader(self, key: str, offset: int = 0) -> ObjectReader:
        """Stream the object from `offset`; it is opened on the first read."""
        ...

    def open_seekable(self, key: str) -> BinaryIO:
        """A synchronous, seekable, read-only file: call it and use it in a thread only."""
        ...

    async def pending_uploads(self, prefix: str = "") -> list[str]:
        """Keys of uploads started and neither completed nor aborted."""
        ...

    async def abort_stale_uploads(self, older_than: float) -> list[str]:
        """Abort the pending uploads nothing was written to for `older_than` seconds.

        What a crashed panel left behind (temporary files, S3 multipart uploads): an upload
        still running, in this process or another one sharing the storage, writes at least
        every few seconds and is kept. The keys of the uploads removed.
        """
        ...

    async def close(self) -> None: ...


# -- keys ---------------------------------------------------------------------------------------


def validate_key(key: str) -> str:
    """A relative, normalised, slash-separated key: no `..`, no absolute path, no NUL."""
    if not isinstance(key, str) or not key:
        raise ValidationError("A storage key must not be empty.")
    _check_segments(key, key.split("/"))
    return key


def validate_prefix(prefix: str, *, allow_empty: bool) -> str:
    """A key prefix: a key, a key ending with "/", or (where allowed) empty for everything."""
    if not isinstance(prefix, str):
        raise ValidationError("A storage key prefix must be text.")
    if not prefix:
        if allow_empty:
            return prefix
        raise ValidationError("A storage key prefix must not be empty.")
    segments = prefix.split("/")
    if segments[-1] == "":  # "projects/7/"
        segments.pop()
    _check_segments(prefix, segments)
    return prefix


def _check_segments(key: str, segments: list[str]) -> None:
    shown = repr(key[:80])
    if "\0" in key or "\\" in key:
        raise ValidationError(f"The storage key {shown} contains a forbidden character.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValidationError(f"The storage key {shown} is longer than {MAX_KEY_BYTES} bytes.")
    if key.startswith("/"):
        raise ValidationError(f"The storage key {shown} must be relative, not absolute.")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValidationError(f"The storage key {shown} has an empty, '.' or '..' part.")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise ValidationError(f"The storage key {shown} has a part that is too long.")
    if segments and segments[0] == INCOMING:
        raise ValidationError(f"The storage key {shown} is reserved.")


# -- streamed reading ---------------------------------------------------------------------------


class _Source(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class ObjectReader:
    """One object streamed in chunks: `async for chunk in reader`, or `await reader.read(n)`.

    The object is opened on the first read (a missing one raises NotFoundError then), in the
    adapter's threads; at most one chunk is held at a time. It closes itself at the end of the
    object; `aclose()` (or `async with`) releases it earlier.
    """

    def __init__(
        self,
        opener: Callable[[], _Source | None],
        run: Callable[[Callable[[], Any]], Any],
        chunk_size: int = READ_CHUNK,
    ) -> None:
        self._opener = opener
        self._run = run
        self._chunk_size = chunk_size
        self._source: _Source | None = None
        self._opened = False
        self._closed = False
        self._lock = asyncio.Lock()

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (a chunk when negative); b"" at the end of the object."""
        if size == 0:
            return b""
        if size < 0:
            size = self._chunk_size
        async with self._lock:
            if self._closed:
                return b""
            if not self._opened:
                self._source = await self._run(self._opener)
                self._opened = True
            source = self._source
            if source is None:  # reading from at or past the end
                await self._close_locked()
                return b""
            data: bytes = await self._run(functools.partial(source.read, size))
            if not data:
                await self._close_locked()
            return data

    async def aclose(self) -> None:
        async with self._lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        self._closed = True
        source, self._source = self._source, None
        if source is not None:
            await self._run(source.close)

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def __aenter__(self) -> ObjectReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _check_offset(offset: int) -> int:
    if offset < 0:
        raise ValidationError("A read cannot start before the beginning of the object.")
    return offset


class _Lifecycle:
    """The shared state machine of writers: open -> completed | failed -> aborted."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._state = "open"  # open, completing, completed, failed, aborted
        self._bytes_written = 0
        self._lock = asyncio.Lock()
        self._stored: StoredObject | None = None

    @property
    def key(self) -> str:
        return self._key

    @property
    def bytes_written(self) -> int:
        return self._bytes_written

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the upload of {self._key!r} is {self._state} already")

    async def abort(self) -> None:
        # Shielded: a cancelled caller (a dropped connection) must not leave a half clean-up.
        task = asyncio.ensure_future(self._abort())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        await asyncio.shield(task)

    async def _abort(self) -> None:
        raise NotImplementedError


# -- local directory ----------------------------------------------------------------------------


class LocalDirectoryStorage:
    """Keys are files under `root`; uploads land in `root/.incoming` until they complete."""

    def __init__(self, root: Path | str, *, max_workers: int = 4) -> None:
        self.root = Path(root).absolute()
        self.incoming = self.root / INCOMING
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ghst-storage")

    async def _run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    async def prepare(self) -> None:
        await self._run(functools.partial(self.incoming.mkdir, parents=True, exist_ok=True))

    async def open_writer(self, key: str) -> StorageWriter:
        path = self._path(key)

        def create() -> tuple[int, Path]:
            self.incoming.mkdir(parents=True, exist_ok=True)
            # The key is in the name so that pending_uploads() can say which upload it was.
            fd, temp = tempfile.mkstemp(
                dir=self.incoming, prefix=quote(key, safe="")[:150] + ".", suffix=".part"
            )
            return fd, Path(temp)

        fd, temp = await self._run(create)
        return _LocalWriter(self, key, path, temp, fd)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await self._run(functools.partial(path.unlink, missing_ok=True))

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)

        def remove() -> int:
            count = 0
            for _key, path in self._walk(prefix):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    count += 1
                self._prune(path.parent)
            return count

        return await self._run(remove)

    def _walk(self, prefix: str) -> Iterator[tuple[str, Path]]:
        """(key, path) of the stored files whose key starts with `prefix`."""
        folder, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        for directory, dirnames, filenames in os.walk(start):
            here = Path(directory)
            if here == self.root:
                dirnames[:] = [name for name in dirnames if name != INCOMING]
            base = here.relative_to(self.root).as_posix()
            for name in filenames:
                key = name if base == "." else f"{base}/{name}"
                if key.startswith(prefix):
                    yield key, here / name

    def _prune(self, directory: Path) -> None:
        """Remove empty directories from `directory` up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    async def size(self, key: str) -> int | None:
        path = self._path(key)

        def stat() -> int | None:
            try:
                result = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            return result.st_size if path.is_file() else None

        return await self._run(stat)

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    async def list_objects(self, prefix: str) -> list[ListedObject]:
        validate_prefix(prefix, allow_empty=False)

        def scan() -> list[ListedObject]:
            found = []
            for key, path in self._walk(prefix):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted meanwhile
                found.append(ListedObject(key, stat.st_size, stat.st_mtime))
            return sorted(found, key=lambda listed: listed.key)

        return await self._run(scan)

    def open_reader(self, key: str, offset: int = 0) -> ObjectReader:
        path = self._path(key)
        _check_offset(offset)

        def opener() -> _Source:
            file = self._open(path, key)
            file.seek(offset)
            return file

        return ObjectReader(opener, self._run)

    def open_seekable(self, key: str) -> BinaryIO:
        return self._open(self._path(key), key)

    @staticmethod
    def _open(path: Path, key: str) -> BinaryIO:
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise NotFoundError(f"There is no stored object {key!r}.") from error

    async def pending_uploads(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix, allow_empty=True)

        def scan() -> list[str]:
            try:
                names = os.listdir(self.incoming)
            except FileNotFoundError:
                return []
            keys = [unquote(name.rsplit(".", 2)[0]) for name in names if name.endswith(".part")]
            return sorted(key for key in keys if key.startswith(prefix))

        return await self._run(scan)

    async def abort_stale_uploads(self, older_than: float) -> list[str]:
        def remove() -> list[str]:
            # A file's mtime is its last write: an upload in progress keeps its file fresh.
            cutoff = time.time() - older_than
            removed: list[str] = []
            try:
                entries = list(os.scandir(self.incoming))
            except FileNotFoundError:
                return []
            for entry in entries:
                if not entry.name.endswith(".part"):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # completed or aborted meanwhile
                removed.append(unquote(entry.name.rsplit(".", 2)[0]))
            return sorted(removed)

        return await self._run(remove)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)


class _LocalWriter(_Lifecycle):
    """An upload into a temporary file, written by the adapter's threads.

    `write` only keeps a reference to each chunk (no copy on the event loop); every
    LOCAL_WRITE_BUFFER bytes the chunks go to a thread as one `os.writev`, while the next
    buffer gathers. `write` waits only when that thread is still busy with the previous
    buffer, so memory stays at two buffers and the connection is held up by the disk only
    when the disk is the slower of the two.

    Where the file system allows it the file is written with O_DIRECT, from one staging
    buffer the thread reuses: the data goes to the disk without passing through the page
    cache, which costs the kernel a fresh page for every 4 KiB of the upload (the largest CPU
    cost of a local upload after SSH itself: ~2-3 s of CPU per GiB on the VMs measured, ~0.3 s
    this way). Uploads are read back rarely, so caching them is of little use anyway. The last
    partial block is written without O_DIRECT when the upload completes.

    Otherwise (O_DIRECT refused) the chunks go through the page cache, and every
    LOCAL_WRITEBACK bytes the kernel is asked to start writing them to the disk (it would
    otherwise wait until `complete`), so the fsync that makes a version durable waits for the
    last few MiB instead of the whole file (~0.5 s per GiB here).
    """

    def __init__(
        self, storage: LocalDirectoryStorage, key: str, path: Path, temp: Path, fd: int
    ) -> None:
        super().__init__(key)
        self._storage = storage
        self._path = path
        self._temp = temp
        self._fd: int | None = fd
        self._chunks: list[bytes] = []
        self._gathered = 0
        # The buffer being written by a thread: never cancelled (shielded), always awaited
        # before the file is closed, so no thread writes to a closed (or reused) descriptor.
        self._flushing: asyncio.Future[None] | None = None
        self._on_file = 0  # bytes written to the file (by the threads)
        self._written_back = 0  # bytes whose writeback to disk was started
        # O_DIRECT: its aligned staging buffer (made by the first write) and what it holds.
        self._direct = _enable_direct_io(fd)
        self._staging: mmap.mmap | None = None
        self._staged = 0

    async def write(self, data: bytes) -> None:
        async with self._lock:
            self._check_open()
            if not data:
                return
            if not isinstance(data, bytes):  # kept by reference: it must not change later
                data = bytes(data)
            self._chunks.append(data)
            self._gathered += len(data)
            self._bytes_written += len(data)
            if self._gathered >= LOCAL_WRITE_BUFFER:
                try:
                    await self._hand_off()
                except BaseException:
                    self._state = "failed"
                    raise

    async def _hand_off(self) -> None:
        """Give the gathered chunks to a thread, once the previous buffer is on file."""
        await self._wait_flushed()
        chunks, self._chunks, self._gathered = self._chunks, [], 0
        if chunks:
            self._flushing = asyncio.ensure_future(
                self._storage._run(functools.partial(self._write_out, chunks))
            )

    async def _wait_flushed(self) -> None:
        """Wait for the buffer being written (uncancelled even if the caller is); raise its error."""
        flushing = self._flushing
        if flushing is not None:
            await asyncio.shield(flushing)
            self._flushing = None

    def _write_out(self, chunks: list[bytes]) -> None:
        """In a thread: append the chunks to the file; start the writeback now and then."""
        fd = self._fd
        if fd is None:
            raise RuntimeError(f"the upload of {self._key!r} is closed already")
        if self._direct:
            self._write_direct(fd, chunks)
            return
        self._on_file += _write_all(fd, chunks)
        pending = self._on_file - self._written_back
        if pending >= LOCAL_WRITEBACK and hasattr(os, "posix_fadvise"):
            # DONTNEED starts writing the range's dirty pages back without waiting for them
            # (and lets the kernel drop them from its cache once they are on disk).
            os.posix_fadvise(fd, self._written_back, pending, os.POSIX_FADV_DONTNEED)
            self._written_back = self._on_file

    def _write_direct(self, fd: int, chunks: list[bytes]) -> None:
        """Copy the chunks into the staging buffer; write it whenever it is full, and at the
        end its whole blocks (the rest stays for the next call or `_publish`)."""
        if self._staging is None:
            self._staging = mmap.mmap(-1, LOCAL_WRITE_BUFFER)  # page-aligned, as O_DIRECT wants
        staging, size = self._staging, len(self._staging)
        for position, chunk in enumerate(chunks):
            view = memoryview(chunk)
            while view:
                count = min(size - self._staged, len(view))
                staging[self._staged : self._staged + count] = view[:count]
                self._staged += count
                view = view[count:]
                if self._staged == size:
                    self._write_staged(fd)
                    if not self._direct:  # fell back to the page cache: the rest goes there
                        self._on_file += _write_all(fd, [view, *chunks[position + 1 :]])
                        return
        self._write_staged(fd)

    def _write_staged(self, fd: int) -> None:
        """Write the staging buffer's whole blocks; keep the partial block at its start."""
        staging = self._staging
        assert staging is not None
        whole = self._staged - self._staged % DIRECT_IO_BLOCK
        written = 0
        try:
            while written < whole:
                count = os.write(fd, memoryview(staging)[written:whole])
                if count <= 0:
                    raise OSError(f"write wrote nothing ({count})")
                written += count
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            # The file system took the flag but not this write: no more O_DIRECT. A refused
            # write wrote nothing, so what is left goes through the page cache instead.
            self._stop_direct_io(fd)
            rest = _write_all(fd, [memoryview(staging)[written : self._staged]])
            self._on_file += written + rest
            self._staged = 0
            return
        left = self._staged - written
        staging[:left] = staging[written : self._staged]
        self._staged = left
        self._on_file += written

    def _stop_direct_io(self, fd: int) -> None:
        self._direct = False
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)

    def _release_staging(self) -> None:
        staging, self._staging = self._staging, None
        if staging is not None:
            with contextlib.suppress(BufferError):  # a view still held (a traceback): GC frees it
                staging.close()

    async def complete(self) -> StoredObject:
        async with self._lock:
            if self._stored is not None:
                return self._stored
            self._check_open()
            self._state = "completing"
            try:
                await self._hand_off()
                await self._wait_flushed()
                await self._storage._run(self._publish)
            except BaseException:
                self._state = "failed"
                raise
            self._state = "completed"
            self._stored = StoredObject(self._key, self._bytes_written)
            return self._stored

    def _publish(self) -> None:
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            if self._direct:
                # The last partial block: O_DIRECT writes whole blocks only.
                self._stop_direct_io(fd)
                if self._staging is not None and self._staged:
                    self._on_file += _write_all(fd, [self._staging[: self._staged]])
                    self._staged = 0
            os.fsync(fd)
        finally:
            os.close(fd)
            self._release_staging()
        # A concurrent delete_prefix may remove the empty folder between mkdir and replace.
        for attempt in range(3):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(self._temp, self._path)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    async def _abort(self) -> None:
        async with self._lock:
            if self._state in ("completed", "aborted"):
                return
            self._state = "aborted"
            self._chunks, self._gathered = [], 0
            if self._flushing is not None:
                await asyncio.wait([self._flushing])  # the thread is done with the descriptor
                if not self._flushing.cancelled():
                    self._flushing.exception()  # retrieved, so asyncio does not log it
                self._flushing = None
            await self._storage._run(self._discard)

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._release_staging()
        self._temp.unlink(missing_ok=True)


def _enable_direct_io(fd: int) -> bool:
    """Turn O_DIRECT on for `fd` if this system and file system have it."""
    if not LOCAL_DIRECT_IO or not hasattr(os, "O_DIRECT"):
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
    except OSError:
        return False  # e.g. tmpfs before Linux 6.6
    return True


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def _write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> int:
    """Write every chunk, in order, with as few `writev` calls as the kernel allows."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    total = first = 0
    while first < len(views):
        count = os.writev(fd, views[first : first + _IOV_MAX])
        if count <= 0:
            raise OSError(f"writev wrote nothing ({count})")
        total += count
        while count:  # a short write: skip what went, keep the rest of a chunk cut in two
            head = views[first]
            if count >= len(head):
                count -= len(head)
                first += 1
            else:
                views[first] = head[count:]
                count = 0
    return total


# -- S3 -----------------------------------------------------------------------------------------

# botocore's defaults (60 s connect and read timeouts, "legacy" retries with back-off) make a
# dead S3 hang a client 9-16 s before anything tells the user. Set them explicitly: a refused
# connection fails in ~0.2 s (measured); a host that never answers costs at most 2 attempts of
# 5 s each (total_max_attempts counts the first try; "max_attempts" would count retries only).
#
# Bodies are not hashed into the signature: over plain HTTP (a MinIO beside the panel) botocore
# otherwise SHA-256s every part, ~0.8 s of CPU per GiB uploaded, as much as the CRC32 checksum
# it sends anyway and the server checks. The headers stay signed. This is what botocore does by
# itself over HTTPS.
S3_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"total_max_attempts": 2, "mode": "standard"},
    # MinIO, SeaweedFS and moto serve buckets as paths, not subdomains.
    s3={"addressing_style": "path", "payload_signing_enabled": False},
    request_checksum_calculation="when_supported",
    max_pool_connections=20,
)

# What a storage server that is down, unreachable or dropping connections looks like.
_UNREACHABLE = (
    botocore.exceptions.ConnectionError,  # refused, DNS, connect timeout, TLS, proxy
    botocore.exceptions.HTTPClientError,  # read timeout, connection closed mid-response
    botocore.exceptions.IncompleteReadError,
)


def _error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_missing(error: botocore.exceptions.ClientError) -> bool:
    """A missing object (not a missing bucket, which is the storage's setup gone wrong)."""
    if _error_code(error) == "NoSuchBucket":
        return False
    return _http_status(error) == 404 or _error_code(error) in ("404", "NoSuchKey", "NotFound")


# Answers that mean the panel's S3 settings are wrong, not that S3 is down: no retry helps.
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "403",
        "Forbidden",
    }
)


# A body that did not match its checksum (changed on the way): the server stored nothing.
_DAMAGED_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"})


def _translate(error: Exception, bucket: str = "") -> Exception:
    """A PanelError for a storage server that is down or refuses the panel, else the error."""
    original = error  # botocore is untyped: narrowed to one of its classes, `error` is Any
    if isinstance(error, botocore.exceptions.SSLError):
        # Answers, but with a certificate the panel does not trust: no retry helps.
        log.error("S3's TLS certificate is not trusted: %s (set GHST_S3_CA_BUNDLE)", error)
        return StorageRefusedError(CERTIFICATE_UNTRUSTED)
    if isinstance(error, _UNREACHABLE):
        return UnavailableError(STORAGE_DOWN)
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        log.error("S3 refused: the panel has no access key for it (GHST_S3_ACCESS_KEY)")
        return StorageRefusedError(STORAGE_REFUSED)
    if not isinstance(error, botocore.exceptions.ClientError):
        return error
    code, status = _error_code(error), _http_status(error)
    if code == "NoSuchBucket":
        name = str(error.response.get("Error", {}).get("BucketName") or bucket)
        log.error("S3 bucket %r does not exist (check GHST_S3_BUCKET)", name)
        return StorageRefusedError(BUCKET_MISSING.format(bucket=name))
    if code in _DAMAGED_CODES:
        log.warning("S3 refused a body that did not match its checksum (%s)", code)
        return UnavailableError(STORAGE_DAMAGED)
    if status == 403 or code in _REFUSED_CODES:
        log.error("S3 refused the panel's credentials: %s (HTTP %s)", code, status)
        return StorageRefusedError(STORAGE_REFUSED)
    if status >= 500:
        return UnavailableError(STORAGE_DOWN)
    return original


def _guarded(function: Callable[[], T], bucket: str = "") -> T:
    try:
        return function()
    except Exception as error:
        translated = _translate(error, bucket)
        if translated is error:
            raise
        raise translated from error


class S3Storage:
    """Objects in one S3 bucket, with streamed multipart uploads and ranged reads."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        part_size: int = DEFAULT_PART_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        *,
        max_workers: int = 8,
        read_ahead: int = READ_AHEAD,
        config: botocore.config.Config = S3_CLIENT_CONFIG,
        ca_bundle: str | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self.read_ahead = read_ahead
        self._credentials = (access_key, secret_key)
        self._config = config
        self._ca_bundle = ca_bundle
        # The client is built on first use, in a worker thread: loading botocore's service
        # models takes tens of milliseconds of CPU the event loop must not spend.
        self._client_lock = threading.Lock()
        self._client_instance: Any = None
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ghst-s3")

    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe once built). Call from a worker thread."""
        with self._client_lock:
            if self._client_instance is None:
                access_key, secret_key = self._credentials
                session = boto3.session.Session()
                self._client_instance = session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    region_name=self.region,
                    config=self._config,
                    verify=self._ca_bundle,  # None: the system's CAs
                )
            return self._client_instance

    async def _run(self, function: Callable[[], T]) -> T:
        """Run a blocking call on the adapter's threads; a dead server is UnavailableError."""
        loop = asyncio.get_running_loop()
        guarded = functools.partial(_guarded, function, bucket=self.bucket)
        return await loop.run_in_executor(self._executor, guarded)

    async def prepare(self) -> None:
        await self.ensure_bucket()

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""

        def ensure() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as error:
                if not _is_missing(error):
                    raise
            options: dict[str, Any] = {}
            if self.region != "us-east-1":
                options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(Bucket=self.bucket, **options)
            except botocore.exceptions.ClientError as error:
                if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        await self._run(ensure)

    async def open_writer(self, key: str) -> StorageWriter:
        return _S3Writer(self, validate_key(key))

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run(functools.partial(self.client.delete_object, Bucket=self.bucket, Key=key))

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)

        def remove() -> int:
            count = 0
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                failed = answer.get("Errors", [])
                if failed:
                    first = failed[0]
                    raise UnavailableError(
                        f"Storage did not delete {len(failed)} objects"
                        f" ({first.get('Code')}: {first.get('Message')}). Please try again."
                    )
                count += len(keys)
            return count

        return await self._run(remove)

    def _head_size(self, key: str) -> int | None:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as error:
            if _is_missing(error):
                return None
            raise
        return int(answer["ContentLength"])

    async def size(self, key: str) -> int | None:
        validate_key(key)
        return await self._run(functools.partial(self._head_size, key))

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    def open_reader(self, key: str, offset: int = 0) -> ObjectReader:
        validate_key(key)
        _check_offset(offset)

        def opener() -> _Source | None:
            options = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key, **options)
            except botocore.exceptions.ClientError as error:
                if _is_missing(error):
                    raise NotFoundError(f"There is no stored object {key!r}.") from error
                if _error_code(error) == "InvalidRange":  # offset at or past the end
                    return None
                raise
            body: _Source = answer["Body"]
            return body

        return ObjectReader(opener, self._run)

    async def list_objects(self, prefix: str) -> list[ListedObject]:
        validate_prefix(prefix, allow_empty=False)

        def scan() -> list[ListedObject]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            found = [
                ListedObject(item["Key"], int(item["Size"]), item["LastModified"].timestamp())
                for page in pages
                for item in page.get("Contents", [])
            ]
            return sorted(found, key=lambda listed: listed.key)

        return await self._run(scan)

    def open_seekable(self, key: str) -> BinaryIO:
        validate_key(key)
        size = _guarded(functools.partial(self._head_size, key), self.bucket)
        if size is None:
            raise NotFoundError(f"There is no stored object {key!r}.")
        raw = _RangeReader(self.client, self.bucket, key, size)
        return io.BufferedReader(raw, buffer_size=self.read_ahead)

    async def pending_uploads(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix, allow_empty=True)

        def scan() -> list[str]:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return sorted(upload["Key"] for page in pages for upload in page.get("Uploads", []))

        return await self._run(scan)

    async def abort_stale_uploads(self, older_than: float) -> list[str]:
        def remove() -> list[str]:
            # S3's clock, as near as ours: the times compared are S3's own timestamps.
            cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
            client = self.client
            removed: list[str] = []
            uploads = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for upload in (item for page in uploads for item in page.get("Uploads", [])):
                key, upload_id = upload["Key"], upload["UploadId"]
                if upload["Initiated"] > cutoff:
                    continue
                # Started long ago, but a large upload may still be sending parts.
                parts = client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
                try:
                    last = max(
                        (part["LastModified"] for page in parts for part in page.get("Parts", [])),
                        default=upload["Initiated"],
                    )
                    if last > cutoff:
                        continue
                    client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except botocore.exceptions.ClientError as error:
                    if _error_code(error) == "NoSuchUpload":
                        continue  # completed or aborted meanwhile
                    raise
                removed.append(key)
            return sorted(removed)

        return await self._run(remove)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._client_lock:
            client, self._client_instance = self._client_instance, None
        if client is not None:
            client.close()


class _RangeReader(io.RawIOBase):
    """A read-only, seekable view of one S3 object: each readinto is one ranged GET.

    Wrapped in io.BufferedReader, whose buffer is the read-ahead: small reads and short
    seeks are served from it, so zipfile's and tarfile's many small reads cost few requests.
    """

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._position = 0
        self.name = key
        self.requests = 0

    def _check_not_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_not_closed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_not_closed()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise OSError(22, "negative seek position")
        self._position = position
        return position

    def readall(self) -> bytes:
        # RawIOBase's readall reads 8 KiB at a time: here one ranged GET (~3 ms) per 8 KiB.
        chunks = []
        while chunk := self.read(MAX_RANGE):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        self._check_not_closed()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position, MAX_RANGE)
        if wanted <= 0:
            return 0
        first, last = self._position, self._position + wanted - 1
        got = _guarded(functools.partial(self._get, first, last, view[:wanted]), self._bucket)
        self._position += got
        return got

    def _get(self, first: int, last: int, view: memoryview) -> int:
        self.requests += 1
        answer = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={first}-{last}"
        )
        body = answer["Body"]
        got = 0
        try:
            while got < len(view):
                count = body.readinto(view[got:])
                if not count:
                    break
                got += count
        finally:
            body.close()
        if got == 0:
            raise NotFoundError(f"The stored object {self._key!r} changed while it was read.")
        return got


class _S3Writer(_Lifecycle):
    """A multipart upload fed part by part; a single PutObject when it ends within one part.

    Each part is gathered in an io.BytesIO (botocore sends a file-like body without copying
    it) and handed to a worker thread; `write` waits while `max_in_flight` parts are uploading,
    so at most (max_in_flight + 1) parts are in memory.

    Requests run as futures of their own, shielded from the caller's cancellation, and abort()
    waits for them: a write or complete cancelled halfway (a dropped connection) cannot leave
    a multipart upload or an object behind that abort() did not see.
    """

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__(key)
        self._storage = storage
        # The part being gathered; None between parts (allocated by the next write).
        self._buffer: io.BytesIO | None = io.BytesIO()
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._in_flight: set[asyncio.Future[None]] = set()
        self._creating: asyncio.Future[dict[str, Any]] | None = None
        self._storing: asyncio.Future[dict[str, Any]] | None = None

    def _start(self, request: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.ensure_future(self._storage._run(request))

    async def write(self, data: bytes) -> None:
        async with self._lock:
            self._check_open()
            try:
                view = memoryview(data)
                while view:
                    if self._buffer is None:
                        # Past the first part more are likely: give the buffer its full size
                        # at once, since a BytesIO grown write by write over-allocates.
                        self._buffer = _preallocated(self._storage.part_size)
                    room = self._storage.part_size - self._buffer.tell()
                    self._buffer.write(view[:room])
                    self._bytes_written += min(room, len(view))
                    view = view[room:]
                    if self._buffer.tell() >= self._storage.part_size:
                        await self._ship_part()
            except BaseException:
                self._state = "failed"
                raise

    async def _ship_part(self) -> None:
        storage = self._storage
        if self._upload_id is None:
            self._creating = self._start(
                functools.partial(
                    storage.client.create_multipart_upload, Bucket=storage.bucket, Key=self._key
                )
            )
            answer = await asyncio.shield(self._creating)
            self._upload_id = str(answer["UploadId"])
        await self._wait_for_room(storage.max_in_flight - 1)
        if self._next_part > MAX_PARTS:
            raise ValidationError(
                f"This upload is larger than storage accepts ({MAX_PARTS} parts of "
                f"{storage.part_size // MiB} MiB)."
            )
        body = self._take_buffer()
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.add(self._start(functools.partial(self._upload, number, body)))

    def _take_buffer(self) -> io.BytesIO:
        body = io.BytesIO() if self._buffer is None else self._buffer
        self._buffer = None
        body.truncate(body.tell())  # a preallocated buffer holds zeros past what was written
        body.seek(0)
        return body

    def _upload(self, number: int, body: io.BytesIO) -> None:
        try:
            answer = self._storage.client.upload_part(
                Bucket=self._storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        finally:
            body.close()  # free the part now, not when the future is collected
        self._etags[number] = str(answer["ETag"])

    async def _wait_for_room(self, at_most: int) -> None:
        """Wait until no more than `at_most` parts are uploading; raise a part's failure."""
        while len(self._in_flight) > at_most:
            done, self._in_flight = await asyncio.wait(
                self._in_flight, return_when=asyncio.FIRST_COMPLETED
            )
            errors = [error for future in done if (error := future.exception()) is not None]
            if errors:
                raise errors[0]

    async def complete(self) -> StoredObject:
        async with self._lock:
            if self._stored is not None:
                return self._stored
            self._check_open()
            self._state = "completing"
            try:
                etag = await self._finish()
            except BaseException:
                self._state = "failed"
                raise
            self._state = "completed"
            self._stored = StoredObject(self._key, self._bytes_written, etag)
            return self._stored

    async def _finish(self) -> str:
        storage = self._storage
        if self._upload_id is None:  # it all fits in one part
            body = self._take_buffer()
            request = functools.partial(
                storage.client.put_object, Bucket=storage.bucket, Key=self._key, Body=body
            )
        else:
            if self._buffer is not None and self._buffer.tell():
                await self._ship_part()  # the last part may be smaller than part_size
            await self._wait_for_room(0)
            parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
            request = functools.partial(
                storage.client.complete_multipart_upload,
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._storing = self._start(request)
        answer = await asyncio.shield(self._storing)
        return str(answer["ETag"])

    async def _abort(self) -> None:
        async with self._lock:
            if self._state in ("completed", "aborted"):
                return
            self._state = "aborted"
            self._buffer = None
            # Wait for every request still running, so none lands after the clean-up.
            if self._creating is not None and self._upload_id is None:
                await asyncio.wait([self._creating])
                if self._creating.exception() is None:
                    self._upload_id = str(self._creating.result()["UploadId"])
            while self._in_flight:
                done, self._in_flight = await asyncio.wait(self._in_flight)
                for future in done:
                    future.exception()  # retrieved, so asyncio does not log it
            maybe_stored = False
            if self._storing is not None:
                await asyncio.wait([self._storing])
                maybe_stored = _may_have_stored(self._storing)
            if self._upload_id is None and not maybe_stored:
                return
            try:
                await self._storage._run(functools.partial(self._clean_up, maybe_stored))
            except BaseException:
                self._state = "failed"  # let a later abort() try again
                raise

    def _clean_up(self, maybe_stored: bool) -> None:
        storage = self._storage
        if self._upload_id is not None:
            try:
                storage.client.abort_multipart_upload(
                    Bucket=storage.bucket, Key=self._key, UploadId=self._upload_id
                )
            except botocore.exceptions.ClientError as error:
                if _error_code(error) != "NoSuchUpload":
                    raise
        if maybe_stored:
            storage.client.delete_object(Bucket=storage.bucket, Key=self._key)


def _may_have_stored(request: asyncio.Future[Any]) -> bool:
    """Whether a finished PutObject/CompleteMultipartUpload may have stored the object."""
    if request.cancelled():
        return True
    error = request.exception()
    if error is None:
        return True  # it did: complete() was cancelled or failed after the answer came
    cause = error.__cause__ if isinstance(error, UnavailableError) else error
    # A refused connection or an error answer stored nothing; a lost answer may have.
    return not isinstance(
        cause, botocore.exceptions.ConnectionError | botocore.exceptions.ClientError
    )


def _preallocated(size: int) -> io.BytesIO:
    """An empty-looking BytesIO that already owns `size` bytes: writes fill it in place."""
    buffer = io.BytesIO()
    buffer.seek(size - 1)
    buffer.write(b"\0")
    buffer.seek(0)
    return buffer


# -- factory ------------------------------------------------------------------------------------


def storage_from_settings(
    *,
    s3_endpoint: str | None,
    s3_bucket: str,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_region: str,
    storage_dir: str | Path,
    s3_ca_bundle: str | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> ObjectStorage:
    """S3 when an endpoint is set, else the local directory `storage_dir`.

    Call `await storage.prepare()` before the first upload (it creates the bucket or folder).
    """
    if s3_endpoint:
        return S3Storage(
            s3_endpoint,
            s3_bucket,
            s3_access_key,
            s3_secret_key,
            s3_region,
            part_size,
            max_in_flight,
            ca_bundle=s3_ca_bundle,
        )
    if not str(storage_dir):
        raise ValidationError("Set a storage directory or an S3 endpoint for archives.")
    return LocalDirectoryStorage(Path(storage_dir))
