"""The storage interface every adapter implements, and what adapters share: key rules,
streamed reading, the writer life cycle."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, TypeVar

from core.errors import UnavailableError, ValidationError

T = TypeVar("T")

MiB = 1 << 20
READ_CHUNK = 1 * MiB  # what one `ObjectReader` iteration yields at most
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # a file name's limit on Linux file systems

STORAGE_DOWN = "Storage is not reachable right now. Please try again in a moment."


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


class ByteSource(Protocol):
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
        opener: Callable[[], ByteSource | None],
        run: Callable[[Callable[[], Any]], Any],
        chunk_size: int = READ_CHUNK,
    ) -> None:
        self._opener = opener
        self._run = run
        self._chunk_size = chunk_size
        self._source: ByteSource | None = None
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


def check_offset(offset: int) -> int:
    if offset < 0:
        raise ValidationError("A read cannot start before the beginning of the object.")
    return offset


class WriterLifecycle:
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


def seek_position(current: int, size: int, offset: int, whence: int) -> int:
    """Where `seek(offset, whence)` lands in a file of `size` bytes read at `current`."""
    if whence == io.SEEK_SET:
        position = offset
    elif whence == io.SEEK_CUR:
        position = current + offset
    elif whence == io.SEEK_END:
        position = size + offset
    else:
        raise ValueError(f"invalid whence ({whence})")
    if position < 0:
        raise OSError(22, "negative seek position")
    return position
