"""Checking an archive while it uploads, so that storage never has to give it back.

    UploadInspection.feed(bytes)   as each write arrives, after storage took it
    UploadInspection.finish(limits) at the end: an ArchiveReport, or the ArchiveRejected that
                                    `inspect_archive` would have raised on the stored object

- tar and tar.gz: the first `SNIFF_BYTES` tell the kind; from then on every byte is handed, in
  order, to `StreamedTarCheck` running in a thread of its own (tarfile and gzip are blocking
  readers). A `_Pipe` carries the bytes: the event loop waits while more than `PIPE_HIGH_WATER`
  bytes are waiting, so memory stays bounded however fast the client sends.
- zip: its end record and central directory sit at the end. The first bytes and the last
  `KEEP_TAIL` bytes are kept (references to the written chunks, no copy); the zip check reads
  from them, and only what lies between (a directory larger than the tail, a link's target) is
  read back from storage with ranged reads.
- anything else: the kept first bytes are enough to refuse it.

Refusals wait for `finish`, at the end of the transfer, with the same messages as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

from core.archives.checks import (
    SNIFF_BYTES,
    ArchiveLimits,
    ArchiveRejected,
    ArchiveReport,
    StreamedTarCheck,
    inspect_archive,
    kind_of,
)
from core.archives.storage.base import seek_position

MiB = 1 << 20
KEEP_TAIL = 2 * MiB  # a zip's central directory up to this size is never read back
PIPE_HIGH_WATER = 4 * MiB  # bytes waiting for the checking thread before `feed` waits
# The checking thread is woken once this much is waiting, not at every write: an SFTP upload
# arrives 32 KiB at a time, and each wake-up costs the event loop a lock and a GIL hand-over.
PIPE_WAKE_AT = 512 * 1024
KEPT_READ_BUFFER = 64 * 1024  # the zip check's reads: few ranged GETs for what was not kept


class _Aborted(Exception):
    """The upload was dropped: the checking thread stops reading."""


class _Pipe:
    """Bytes handed from the event loop (`put`) to one reading thread (`read`).

    `put` waits while more than `high_water` bytes are waiting; the reader wakes it once half
    of them are taken. When the reader stops (it has its verdict), what comes is dropped.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        high_water: int = PIPE_HIGH_WATER,
        wake_at: int = PIPE_WAKE_AT,
    ) -> None:
        self._loop = loop
        self._high_water = high_water
        self._wake_at = wake_at
        self._reader_waits = False
        self._lock = threading.Condition()
        self._chunks: deque[memoryview] = deque()
        self._waiting = 0
        self._full = False
        self._closed = False  # no more bytes will come
        self._aborted = False
        self._stopped = False  # the reader is done
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, data: bytes) -> None:
        with self._lock:
            if self._stopped or self._closed:
                return
            self._chunks.append(memoryview(data))
            self._waiting += len(data)
            if self._reader_waits and self._waiting >= self._wake_at:
                self._lock.notify()
            if self._waiting > self._high_water:
                self._full = True
                self._room.clear()
        await self._room.wait()

    def close(self) -> None:
        """The end of the archive: the reader gets b"" once it has read everything."""
        with self._lock:
            self._closed = True
            self._lock.notify()

    def abort(self) -> None:
        with self._lock:
            self._closed = self._aborted = True
            self._chunks.clear()
            self._lock.notify()
        self._room.set()

    def stop(self) -> None:
        """Called by the reader when it is done: nothing more will be read."""
        with self._lock:
            self._stopped = True
            self._chunks.clear()
            self._waiting = 0
            wake = self._full
            self._full = False
        if wake:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._room.set)

    # The reading thread's side: a forward-only binary source.

    def read(self, size: int = -1, /) -> bytes:
        with self._lock:
            while not self._chunks and not self._closed:
                self._reader_waits = True
                self._lock.wait()
                self._reader_waits = False
            if self._aborted:
                raise _Aborted
            if not self._chunks:
                return b""
            first = self._chunks[0]
            if size < 0 or size >= len(first):
                data = self._chunks.popleft()
            else:
                data, self._chunks[0] = first[:size], first[size:]
            self._waiting -= len(data)
            wake = self._full and self._waiting <= self._high_water // 2
            if wake:
                self._full = False
        if wake:
            self._wake()
        return bytes(data)

    def seek(self, offset: int, /) -> int:
        raise OSError("an upload is read forward only")


class _KeptBytes(io.RawIOBase):
    """A read-only, seekable view of an uploaded object built from its first and last bytes,
    which were kept as they arrived; what lies between is read back from storage."""

    def __init__(
        self, head: bytes, tail: bytes, size: int, read_back: Callable[[], BinaryIO]
    ) -> None:
        super().__init__()
        self._head = head
        self._tail = tail
        self._tail_start = size - len(tail)
        self._size = size
        self._read_back = read_back
        self._stored: BinaryIO | None = None
        self._position = 0
        self.read_back_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = seek_position(self._position, self._size, offset, whence)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        position = self._position
        if position >= self._size or not len(view):
            return 0
        if position < len(self._head):
            data = self._head[position : position + len(view)]
        elif position >= self._tail_start:
            start = position - self._tail_start
            data = self._tail[start : start + len(view)]
        else:
            data = self._read_stored(position, min(len(view), self._tail_start - position))
            if not data:
                return 0
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _read_stored(self, position: int, size: int) -> bytes:
        if self._stored is None:
            self._stored = self._read_back()
        self._stored.seek(position)
        data = self._stored.read(size)
        self.read_back_bytes += len(data)
        return data

    def close(self) -> None:
        stored, self._stored = self._stored, None
        if stored is not None:
            stored.close()
        super().close()


class UploadInspection:
    """The checks of one archive upload, fed as its bytes arrive. Not thread-safe: one writer."""

    def __init__(self, limits: ArchiveLimits, read_back: Callable[[], BinaryIO]) -> None:
        """`limits` without the quota (it is known at the end); `read_back` opens the stored
        object for the zip check's ranged reads, called in a thread, and only if needed."""
        self._limits = limits
        self._read_back = read_back
        self.size = 0
        self._head = b""
        self._sniffed = False
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._pipe: _Pipe | None = None
        self._check: StreamedTarCheck | None = None
        self._pass: asyncio.Future[None] | None = None
        self.read_back_bytes = 0  # what the zip check read back from storage

    async def feed(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # a view of a buffer its owner may reuse
        self.size += len(data)
        if self._pipe is not None:
            await self._pipe.put(data)
            return
        self._keep(data)
        if not self._sniffed and self._tail_size >= SNIFF_BYTES:
            await self._sniff()

    def _keep(self, data: bytes) -> None:
        if len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail_size - len(self._tail[0]) >= KEEP_TAIL:
            self._tail_size -= len(self._tail.popleft())

    async def _sniff(self) -> None:
        self._sniffed = True
        try:
            kind = kind_of(self._head)
        except ArchiveRejected:
            return  # `finish` refuses it from the kept bytes, with the same message
        if kind == "zip":
            return
        # A tar or tar.gz: from here on its bytes go to the one-pass check, none are kept.
        loop = asyncio.get_running_loop()
        self._check = check = StreamedTarCheck(kind, self._limits)
        self._pipe = pipe = _Pipe(loop)
        self._pass = done = loop.create_future()

        def run() -> None:
            error: BaseException | None = None
            try:
                check.run(pipe)
            except BaseException as raised:  # reported to whoever awaits the pass
                error = raised
            finally:
                pipe.stop()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, done, error)

        threading.Thread(target=run, name="ghst-archive-check", daemon=True).start()
        kept, self._tail, self._tail_size = list(self._tail), deque(), 0
        for chunk in kept:
            await pipe.put(chunk)

    async def finish(self, limits: ArchiveLimits) -> ArchiveReport:
        """The verdict once every byte arrived, with the final limits (the quota left now)."""
        if self._pipe is not None and self._pass is not None and self._check is not None:
            self._pipe.close()
            await self._pass
            return await asyncio.to_thread(self._check.verdict, self.size, limits)
        return await asyncio.to_thread(self._inspect_kept, limits)

    def _inspect_kept(self, limits: ArchiveLimits) -> ArchiveReport:
        tail = b"".join(self._tail)
        raw = _KeptBytes(self._head, tail, self.size, self._read_back)
        try:
            with io.BufferedReader(raw, buffer_size=KEPT_READ_BUFFER) as fileobj:
                return inspect_archive(fileobj, limits)
        finally:
            self.read_back_bytes = raw.read_back_bytes

    def abort(self) -> None:
        """Stop checking: the upload was dropped. Safe to call more than once."""
        self._tail.clear()
        if self._pipe is not None:
            self._pipe.abort()
        if self._pass is not None:
            # Its outcome (the _Aborted it raised) is of no interest; retrieve it quietly.
            self._pass.add_done_callback(_ignore)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _ignore(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
