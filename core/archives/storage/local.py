"""Storage in a local directory: uploads land in `root/.incoming` and are renamed into place."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import mmap
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import quote, unquote

from core.archives.storage.base import (
    INCOMING,
    ByteSource,
    ListedObject,
    MiB,
    ObjectReader,
    StorageWriter,
    StoredObject,
    WriterLifecycle,
    check_offset,
    validate_key,
    validate_prefix,
)
from core.errors import NotFoundError

T = TypeVar("T")

LOCAL_WRITE_BUFFER = 4 * MiB  # local writes are gathered into this much before a thread hop
LOCAL_WRITEBACK = 32 * MiB  # how often a local upload asks the kernel to start writing to disk
LOCAL_DIRECT_IO = True  # local uploads bypass the page cache where the file system allows it
DIRECT_IO_BLOCK = 4096  # O_DIRECT writes are multiples of this, at offsets that are too

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
        check_offset(offset)

        def opener() -> ByteSource:
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


class _LocalWriter(WriterLifecycle):
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
