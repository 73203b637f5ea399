"""Checks on the archives users upload (zip, tar, tar.gz) before anything is built from them.

The seed design unpacked user archives as they came and so had zip-slip. Here an archive is
untrusted bytes from start to end:

- `inspect_archive` reads as little as it can (a zip's central directory; one streaming pass over
  a tar or tar.gz) and refuses anything unsafe or unusable, or reports where the app is;
- `StreamedTarCheck` is that same pass over a tar or tar.gz while it is still arriving: the
  checks that need the archive's final size (compression bomb) or the quota left at the end
  (over-quota) are settled by `verdict`, in the order the one-pass check would have made them;
- `extract_archive` checks everything again while it writes (it never trusts an earlier
  inspection, which may have seen a different file) and leaves nothing behind when it refuses.

Both are synchronous and read a seekable binary file object from its start, which may be backed
by ranged S3 reads: callers run them in a thread. Neither holds the archive in memory: a zip's
entries are decompressed here (not by zipfile, which trusts declared sizes) in 64 KiB chunks, a
tar.gz is unzipped by gzip and read by tarfile in stream mode ("r|" on the unzipped bytes, so a
bzip2 or xz stream or a gzip inside the gzip is not opened), and everything an adversarial archive
can make us do is bounded: entries, folder depth, name lengths, tar header bytes, link steps.

Every refusal is an `ArchiveRejected` (a `ValidationError`) with a message for the user (names
from the archive quoted and escaped), a `reason` code for programs and, where one entry is to
blame, its `path`:

    not-an-archive           neither a zip nor a tar (typed by content, never by file name)
    corrupt                  truncated, bad checksum, broken headers or directory
    too-many-entries         more than `max_entries`
    too-large                unpacks to more than `max_total_size`
    over-quota               unpacks to more than the storage left on the user's plan
    compression-bomb         unpacks to more than `max_ratio` times its packed size
    absolute-path            `/x`, `C:\\x`, `\\\\server\\x`
    path-traversal           a `..` component
    bad-name                 control characters, invalid UTF-8, overlong or too deep names
    path-conflict            a name twice, or a file that other entries sit inside
    link-escape              a link leading outside the app folder, or written through
    special-file             devices, FIFOs, sparse or unknown entry types
    encrypted                a password-protected zip entry
    unsupported-compression  a zip method other than stored or deflate
    no-dockerfile            no Dockerfile or compose file where the app root should be

The app root is the top of the archive, or its single top-level folder (macOS's `__MACOSX` and
`.DS_Store` aside); links must stay inside it, as extraction strips that folder.
"""

from __future__ import annotations

import errno
import gzip
import itertools
import os
import re
import secrets
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol

from core.errors import ValidationError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

Kind = Literal["zip", "tar", "tar.gz"]
Reason = Literal[
    "not-an-archive",
    "corrupt",
    "too-many-entries",
    "too-large",
    "over-quota",
    "compression-bomb",
    "absolute-path",
    "path-traversal",
    "bad-name",
    "path-conflict",
    "link-escape",
    "special-file",
    "encrypted",
    "unsupported-compression",
    "no-dockerfile",
]

DOCKERFILE = "Dockerfile"
# In the order `docker compose` looks for them.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# Top-level litter from macOS's Archive Utility; it does not count as a second top-level folder.
IGNORED_TOP_LEVEL = frozenset({"__MACOSX", ".DS_Store"})

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_LINK_TARGET = 4096
MAX_DEPTH = 64  # folders in a path: bounds the work and memory spent per entry
MAX_LINK_HOPS = 40  # as Linux: more than this many links in one lookup is a loop
MAX_LINK_STEPS = 256  # path components walked to resolve one link, links followed included
# tarfile reads long-name and pax headers into memory: one may be at most this large.
TAR_HEADER_ALLOWANCE = 1 * MiB
# Headers and padding per tar entry, on average, that a tar stream may hold besides file data.
TAR_ENTRY_OVERHEAD = 4 * KiB
# After a tar's end-of-archive marker a .tar.gz is read on to check its gzip CRC, but not far.
TAR_TRAILER_ALLOWANCE = 1 * MiB
SNIFF_BYTES = tarfile.BLOCKSIZE  # what telling the kinds apart needs from an archive's start
TAR_RECENT = 32 * KiB  # tarfile reads ahead at most 10 KiB: its last header is in this window
CHUNK = 64 * KiB
UPLOAD_HINT = "Upload a .zip, .tar or .tar.gz of your app."

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_KNOWN_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"BZh", "bzip2-compressed; ghst reads gzip only"),
    (b"\xfd7zXZ\x00", "xz-compressed; ghst reads gzip only"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; ghst reads gzip only"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)

_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
_END_RECORD = struct.Struct("<4sHHHHLLH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQHHLLQQQQ")
_ZIP_METHODS = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz", 98: "PPMd"}
_ZIP_ENCRYPTED = 0x1
_ZIP_DATA_DESCRIPTOR = 0x8
_ZIP_UTF8 = 0x800
_ZIP_MASKED_DIRECTORY = 0x2000
# A central directory record: 46 fixed bytes, a name we accept, and room for extras and comment.
_MAX_DIRECTORY_RECORD = 46 + MAX_PATH_BYTES + 4096

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_size: int = 1 * GiB
    quota_remaining: int | None = None  # storage left on the user's plan, if it is smaller
    max_ratio: int = 100  # unpacked / packed size, for the archive and for each zip entry
    min_bomb_size: int = 1 * MiB  # sizes up to this never count as a compression bomb

    @property
    def size_limit(self) -> int:
        if self.quota_remaining is None:
            return self.max_total_size
        return max(0, min(self.max_total_size, self.quota_remaining))


@dataclass(frozen=True)
class ArchiveReport:
    """What an archive holds. Paths are inside the archive, `/`-separated, `root` included:
    after extraction `Path(destination, dockerfile.removeprefix(root))` is the Dockerfile."""

    kind: Kind
    entries: int
    total_size: int  # unpacked bytes: files, and hard links counted as the copies they become
    root: str  # "" or the single top-level folder holding the app, e.g. "myapp/"
    dockerfile: str | None
    compose_file: str | None


class ArchiveRejected(ValidationError):
    title = "Archive refused"

    def __init__(self, reason: Reason, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.path = path


def inspect_archive(fileobj: BinaryIO, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveReport:
    """Check an archive without unpacking it; raise ArchiveRejected if it must not be built."""
    return _scan(fileobj, limits, None)


def extract_archive(
    fileobj: BinaryIO, destination: Path, limits: ArchiveLimits = ArchiveLimits()
) -> ArchiveReport:
    """Check and unpack an archive into `destination`, the app root landing in it directly.

    `destination` is created if missing; names already in it are never replaced or written
    through. Only files (0o644, or 0o755 if executable), folders (0o755) and symbolic links
    that stay inside the app are written; hard links become copies. On any failure nothing of
    the archive is left in `destination`.
    """
    with _Unpacker(destination) as unpacker:
        report = _scan(fileobj, limits, unpacker)
        unpacker.promote(tuple(report.root.split("/")[:-1]))
    return report


# --- messages ---------------------------------------------------------------------------------


def _show(name: str) -> str:
    """A name for a message: quoted and escaped (it came from the archive), never too long."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _size(count: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count >= scale:
            return f"{f'{count / scale:.1f}'.removesuffix('.0')} {unit}"
    return f"{count} bytes"


def _damaged(detail: str) -> ArchiveRejected:
    return ArchiveRejected("corrupt", f"The archive is damaged: {detail}. Try uploading it again.")


def _cut_short() -> ArchiveRejected:
    return _damaged("it ends too early, as if the upload was cut short")


def _special(name: str, what: str) -> ArchiveRejected:
    return ArchiveRejected(
        "special-file",
        f"{_show(name)} is {what}; an archive may hold only files, folders and links.",
        name,
    )


# --- names and links --------------------------------------------------------------------------


def _check_text(name: str, what: str) -> None:
    if _CONTROL.search(name):
        raise ArchiveRejected("bad-name", f"{what} {_show(name)} contains a control character.")
    if _SURROGATE.search(name):
        raise ArchiveRejected("bad-name", f"{what} {_show(name)} is not valid UTF-8.")


def _split_path(name: str) -> tuple[str, ...]:
    """The components of an entry's path; refuse absolute paths and `..` anywhere."""
    _check_text(name, "The name")
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        raise ArchiveRejected(
            "absolute-path",
            f"{_show(name)} is an absolute path; entries must be relative to the archive's top.",
            name,
        )
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ArchiveRejected(
            "path-traversal",
            f"{_show(name)} contains '..' and would land outside the app folder.",
            name,
        )
    if len(path.encode()) > MAX_PATH_BYTES or any(
        len(part.encode()) > MAX_NAME_BYTES for part in parts
    ):
        raise ArchiveRejected(
            "bad-name",
            f"{_show(name)} is too long: at most {MAX_NAME_BYTES} bytes a name"
            f" and {MAX_PATH_BYTES} a path.",
            name,
        )
    if len(parts) > MAX_DEPTH:
        raise ArchiveRejected(
            "bad-name", f"{_show(name)} is nested more than {MAX_DEPTH} folders deep.", name
        )
    return parts


def _symlink_target(name: str, target: str) -> str:
    """A symbolic link's target with `/` separators; refuse empty and absolute targets."""
    _check_text(target, "The target of link")
    target = target.replace("\\", "/")
    if not target or len(target.encode()) > MAX_LINK_TARGET:
        raise ArchiveRejected(
            "link-escape", f"The link {_show(name)} has an empty or overlong target.", name
        )
    if target.startswith("/") or _DRIVE.match(target):
        raise ArchiveRejected(
            "link-escape",
            f"The link {_show(name)} points to the absolute path {_show(target)}, outside the"
            " archive; links must be relative and stay inside it.",
            name,
        )
    return target


def _hardlink_target(name: str, target: str) -> str:
    """A hard link's target, a path from the archive's top; refuse any that leaves it."""
    try:
        parts = _split_path(target)
    except ArchiveRejected as error:
        raise ArchiveRejected(
            "link-escape",
            f"The hard link {_show(name)} points to {_show(target)}, outside the archive.",
            name,
        ) from error
    return "/".join(parts)


def _escapes(
    links: Mapping[tuple[str, ...], str], folder: tuple[str, ...], target: str
) -> Literal["outside", "loop"] | None:
    """Whether `target`, looked up from `folder` and through the archive's own `links`, leads
    outside the top (`folder` and the keys of `links` are relative to that top) or into a loop."""
    stack = list(folder)
    pending = [part for part in reversed(target.split("/")) if part not in ("", ".")]
    hops = steps = 0
    while pending:
        steps += 1
        if steps > MAX_LINK_STEPS:
            return "loop"
        part = pending.pop()
        if part == "..":
            if not stack:
                return "outside"
            stack.pop()
            continue
        stack.append(part)
        link = links.get(tuple(stack)) if len(stack) <= MAX_DEPTH else None
        if link is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return "loop"
            if link.startswith("/"):
                return "outside"
            stack.pop()
            pending.extend(part for part in reversed(link.split("/")) if part not in ("", "."))
    return None


# --- what all archive kinds have in common ---------------------------------------------------

EntryKind = Literal["file", "dir", "symlink", "hardlink"]


@dataclass(frozen=True)
class _Entry:
    name: str  # as the archive spells it, for messages
    parts: tuple[str, ...]
    kind: EntryKind
    size: int = 0  # declared unpacked size of a file
    packed: int | None = None  # compressed size of a zip entry
    target: str = ""  # symlink: its target; hard link: the path it points to
    executable: bool = False

    @property
    def mode(self) -> int:
        return 0o755 if self.executable or self.kind == "dir" else 0o644


class _Checker:
    """Sees every entry once, in archive order, and refuses as soon as it can.

    `deferred`: the archive's size and the quota are not known yet (it is still arriving), so
    the checks on the unpacked total wait for `settle`, which makes them in the same order."""

    def __init__(
        self, kind: Kind, archive_size: int, limits: ArchiveLimits, *, deferred: bool = False
    ) -> None:
        self.kind: Kind = kind
        self.archive_size = archive_size
        self.limits = limits
        self.entries = 0
        self.total = 0
        self.written = 0
        self._deferred = deferred
        self._totals: list[int] = []  # the unpacked total after each file, while deferred
        self._kinds: dict[tuple[str, ...], EntryKind] = {}
        self._sizes: dict[tuple[str, ...], int] = {}
        self._symlinks: dict[tuple[str, ...], str] = {}
        self._hardlinks: dict[tuple[str, ...], tuple[str, ...]] = {}

    def announce(self, entries: int) -> None:
        """A zip's entry count from its end record, checked before its directory is read."""
        if entries > self.limits.max_entries:
            raise self._too_many(f"{entries:,}")

    def count(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise self._too_many(f"more than {self.limits.max_entries:,}")

    def _too_many(self, count: str) -> ArchiveRejected:
        return ArchiveRejected(
            "too-many-entries",
            f"The archive has {count} entries; at most {self.limits.max_entries:,} are allowed.",
        )

    def add(self, entry: _Entry) -> None:
        parts, name = entry.parts, entry.name
        if not parts:
            if entry.kind == "dir":
                return  # "./": the archive's top itself
            raise ArchiveRejected("bad-name", f"The entry {_show(name)} has no name.", name)
        known = self._kinds.get(parts)
        if known is not None:
            if known == "dir" and entry.kind == "dir":
                return
            raise ArchiveRejected(
                "path-conflict", f"{_show(name)} appears twice in the archive.", name
            )
        size = 0
        if entry.kind == "file":
            size = entry.size
        elif entry.kind == "hardlink":
            target = tuple(entry.target.split("/"))
            if self._kinds.get(target) not in ("file", "hardlink"):
                raise ArchiveRejected(
                    "link-escape",
                    f"The hard link {_show(name)} points to {_show(entry.target)}, which is not"
                    " a file earlier in the archive.",
                    name,
                )
            size = self._sizes[target]
            self._hardlinks[parts] = target
        elif entry.kind == "symlink":
            problem = _escapes({}, parts[:-1], entry.target)
            if problem is not None:
                raise self._link_escape(name, entry.target, problem, "archive")
            self._symlinks[parts] = entry.target
        self._kinds[parts] = entry.kind
        if entry.kind in ("file", "hardlink"):
            self._sizes[parts] = size
            self._grow(entry, size)

    def _check_nesting(self) -> None:
        """No entry may sit inside a file or a link. In sorted order everything inside a path
        comes right after it, so comparing neighbours finds every case."""
        paths = sorted(self._kinds)
        for outer, inner in itertools.pairwise(paths):
            if len(inner) > len(outer) and inner[: len(outer)] == outer:
                kind = self._kinds[outer]
                name, shown = "/".join(inner), _show("/".join(outer))
                if kind == "symlink":
                    raise ArchiveRejected(
                        "link-escape",
                        f"{_show(name)} would be written through the link {shown}.",
                        name,
                    )
                if kind != "dir":
                    raise ArchiveRejected(
                        "path-conflict",
                        f"{shown} is a file, but the archive also puts entries inside it.",
                        name,
                    )

    @staticmethod
    def _link_escape(
        name: str, target: str, problem: Literal["outside", "loop"], where: str
    ) -> ArchiveRejected:
        if problem == "loop":
            return ArchiveRejected(
                "link-escape",
                f"The link {_show(name)} points to {_show(target)}, which leads into a loop"
                " or too long a chain of links.",
                name,
            )
        return ArchiveRejected(
            "link-escape",
            f"The link {_show(name)} points to {_show(target)}, outside the {where};"
            " links must stay inside it.",
            name,
        )

    def _grow(self, entry: _Entry, size: int) -> None:
        limits = self.limits
        ratio = limits.max_ratio
        if (
            entry.packed is not None
            and size > limits.min_bomb_size
            and size > ratio * max(entry.packed, 1)
        ):
            raise ArchiveRejected(
                "compression-bomb",
                f"{_show(entry.name)} unpacks to {_size(size)} from {_size(entry.packed)}, more"
                f" than {ratio} times its packed size; this looks like a compression bomb.",
                entry.name,
            )
        self.total += size
        if self._deferred:
            self._totals.append(self.total)
            return
        self._check_total(self.total)

    def _check_total(self, total: int) -> None:
        """The unpacked total so far against the archive's size and the size limits."""
        limits = self.limits
        ratio = limits.max_ratio
        if (
            self.kind != "tar"
            and total > limits.min_bomb_size
            and total > ratio * max(self.archive_size, 1)
        ):
            raise ArchiveRejected(
                "compression-bomb",
                f"The archive unpacks to {_size(total)} or more from {_size(self.archive_size)},"
                f" more than {ratio} times its size; this looks like a compression bomb.",
            )
        self._check_size(total)

    def settle(self, archive_size: int, limits: ArchiveLimits) -> None:
        """Make the deferred checks now that the archive's size and the limits are final: the
        first total that fails is the refusal the one-pass check would have made there."""
        self.archive_size, self.limits = archive_size, limits
        self._deferred = False
        for total in self._totals:
            self._check_total(total)
        self._totals = []

    def wrote(self, count: int) -> None:
        """Count bytes actually written: refuse once they pass the limit, whatever was declared."""
        self.written += count
        self._check_size(self.written)

    def _check_size(self, total: int) -> None:
        limits = self.limits
        if total <= limits.size_limit:
            return
        quota = limits.quota_remaining
        if quota is not None and quota < limits.max_total_size:
            raise ArchiveRejected(
                "over-quota",
                f"Unpacked, the archive needs more than the {_size(max(quota, 0))} of storage left"
                " on your plan.",
            )
        raise ArchiveRejected(
            "too-large",
            f"Unpacked, the archive is larger than the {_size(limits.max_total_size)} limit.",
        )

    def finish(self) -> ArchiveReport:
        self._check_nesting()
        root = self._root()
        self._check_links(root)
        folder = "".join(f"{part}/" for part in root)
        files = {path for path, kind in self._kinds.items() if kind in ("file", "hardlink")}
        dockerfile = f"{folder}{DOCKERFILE}" if (*root, DOCKERFILE) in files else None
        compose_file = next(
            (f"{folder}{name}" for name in COMPOSE_FILES if (*root, name) in files), None
        )
        if dockerfile is None and compose_file is None:
            raise ArchiveRejected("no-dockerfile", self._no_app_message(files))
        return ArchiveReport(
            kind=self.kind,
            entries=self.entries,
            total_size=self.total,
            root=folder,
            dockerfile=dockerfile,
            compose_file=compose_file,
        )

    def _has_app(self, folder: tuple[str, ...]) -> bool:
        return any(
            self._kinds.get((*folder, name)) in ("file", "hardlink")
            for name in (DOCKERFILE, *COMPOSE_FILES)
        )

    def _top_level(self) -> set[str]:
        return {path[0] for path in self._kinds} - IGNORED_TOP_LEVEL

    def _root(self) -> tuple[str, ...]:
        if self._has_app(()):
            return ()
        top = self._top_level()
        if len(top) == 1:
            folder = (top.pop(),)
            if self._kinds.get(folder, "dir") == "dir" and self._has_app(folder):
                return folder
        return ()

    def _check_links(self, root: tuple[str, ...]) -> None:
        depth = len(root)
        in_app = {
            path[depth:]: target
            for path, target in self._symlinks.items()
            if root and path[:depth] == root
        }
        for path, target in self._symlinks.items():
            name = "/".join(path)
            if root and path[:depth] == root:
                problem = _escapes(in_app, path[depth:-1], target)
                where = f"app folder {_show(root[0])}"
            else:
                problem = _escapes(self._symlinks, path[:-1], target)
                where = "archive"
            if problem is not None:
                raise self._link_escape(name, target, problem, where)
        for path, source in self._hardlinks.items():
            if root and path[:depth] == root and source[:depth] != root:
                raise ArchiveRejected(
                    "link-escape",
                    f"The hard link {_show('/'.join(path))} points to {_show('/'.join(source))},"
                    f" outside the app folder {_show(root[0])}.",
                    "/".join(path),
                )

    def _no_app_message(self, files: set[tuple[str, ...]]) -> str:
        message = (
            f"No {DOCKERFILE} or compose file ({', '.join(COMPOSE_FILES)}) at the top of the"
            " archive or of its single top-level folder."
        )
        nested = sorted(
            (path for path in files if path[-1] in (DOCKERFILE, *COMPOSE_FILES)),
            key=lambda path: (len(path), path),
        )
        if nested:
            found = _show("/".join(nested[0]))
            top = sorted(self._top_level())
            if len(top) > 1:
                shown = ", ".join(_show(name) for name in top[:5]) + (
                    ", ..." if len(top) > 5 else ""
                )
                message += (
                    f" Found {found}, but the archive has {len(top)} top-level entries ({shown}):"
                    " put the app's files at the top, or all in one folder."
                )
            else:
                message += (
                    f" Found {found}, too deep: it must be at the top of the archive or directly"
                    " in its only folder."
                )
        return message


# --- reading ----------------------------------------------------------------------------------


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class ForwardSource(Protocol):
    """Bytes read from the start, forward only (gzip wants `seek`, for rewinding, which such a
    source refuses with OSError)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def seek(self, offset: int, /) -> object: ...


def _read_exact(source: _Reader, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end: raw and ranged streams may return short reads."""
    pieces: list[bytes] = []
    while size > 0:
        piece = source.read(size)
        if not piece:
            break
        pieces.append(piece)
        size -= len(piece)
    return b"".join(pieces)


def _sniff(fileobj: BinaryIO) -> Kind:
    fileobj.seek(0)
    return kind_of(_read_exact(fileobj, SNIFF_BYTES))


def kind_of(head: bytes) -> Kind:
    """The kind of archive whose first `SNIFF_BYTES` bytes (all of it, if shorter) are `head`;
    refuse what is neither (typed by content, never by file name)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[257:262] == b"ustar":
        return "tar"
    looks = next((what for magic, what in _KNOWN_FORMATS if head.startswith(magic)), None)
    hint = f" (it is {looks})" if looks else ""
    raise ArchiveRejected(
        "not-an-archive", f"This file is not a zip or tar archive{hint}. {UPLOAD_HINT}"
    )


def _scan(fileobj: BinaryIO, limits: ArchiveLimits, unpacker: _Unpacker | None) -> ArchiveReport:
    kind = _sniff(fileobj)
    checker = _Checker(kind, fileobj.seek(0, os.SEEK_END), limits)
    if kind == "zip":
        _scan_zip(fileobj, checker, unpacker)
    else:
        _scan_tar(fileobj, checker, unpacker)
    return checker.finish()


# --- zip --------------------------------------------------------------------------------------


def _zip_extent(fileobj: BinaryIO, size: int) -> tuple[int, int]:
    """(entries, central directory size) from the end record, before reading the directory.

    Strict where zipfile is lenient, so that no other tool reads a different file list: the
    end record must close the file and the directory must end where the record says.
    """
    if size < _END_RECORD.size:
        raise _cut_short()
    tail_start = max(0, size - _END_RECORD.size - 0xFFFF)
    fileobj.seek(tail_start)
    tail = _read_exact(fileobj, size - tail_start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END_RECORD.size > len(tail):
        raise _damaged("its zip end record is missing, as if the upload was cut short")
    _, disk, directory_disk, _, entries, directory_size, directory_start, comment = (
        _END_RECORD.unpack_from(tail, at)
    )
    if at + _END_RECORD.size + comment != len(tail):
        raise _damaged("there is data after the end of the zip")
    if disk or directory_disk:
        raise _damaged("it is one part of a zip split across several files")
    directory_end = tail_start + at
    if directory_end >= _ZIP64_LOCATOR.size:
        fileobj.seek(directory_end - _ZIP64_LOCATOR.size)
        locator = _read_exact(fileobj, _ZIP64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            directory_end = _ZIP64_LOCATOR.unpack(locator)[2]
            fileobj.seek(directory_end)
            record = _read_exact(fileobj, _ZIP64_END_RECORD.size)
            if len(record) < _ZIP64_END_RECORD.size or record[:4] != b"PK\x06\x06":
                raise _damaged("its zip64 end record is missing")
            *_, entries, directory_size, directory_start = _ZIP64_END_RECORD.unpack(record)
    if directory_start + directory_size != directory_end:
        raise _damaged("its zip directory is not where the end record says")
    return entries, directory_size


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    name = info.orig_filename
    parts = _split_path(name)
    unix = info.external_attr >> 16 if info.create_system == 3 else 0
    file_type = stat.S_IFMT(unix)
    kind: EntryKind
    if (
        name.replace("\\", "/").endswith("/")
        or file_type == stat.S_IFDIR
        or (info.create_system == 0 and info.external_attr & 0x10)
    ):
        kind = "dir"
    elif file_type == stat.S_IFLNK:
        kind = "symlink"
    elif file_type in (0, stat.S_IFREG):
        kind = "file"
    else:
        raise _special(name, _describe_mode(file_type))
    if info.flag_bits & (_ZIP_ENCRYPTED | _ZIP_MASKED_DIRECTORY):
        raise ArchiveRejected(
            "encrypted",
            f"{_show(name)} is password-protected; upload the archive without a password.",
            name,
        )
    if kind != "dir":
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _ZIP_METHODS.get(info.compress_type, f"zip method {info.compress_type}")
            raise ArchiveRejected(
                "unsupported-compression",
                f"{_show(name)} is compressed with {method}; ghst reads stored and deflated"
                " entries only. Re-create the zip with standard settings.",
                name,
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _damaged(f"the sizes of {_show(name)} disagree")
    return _Entry(
        name=name,
        parts=parts,
        kind=kind,
        size=info.file_size if kind == "file" else 0,
        packed=info.compress_size,
        executable=bool(unix & 0o111),
    )


def _describe_mode(file_type: int) -> str:
    if file_type == stat.S_IFCHR:
        return "a character device"
    if file_type == stat.S_IFBLK:
        return "a block device"
    if file_type == stat.S_IFIFO:
        return "a named pipe (FIFO)"
    if file_type == stat.S_IFSOCK:
        return "a socket"
    return "a file of an unknown type"


def _zip_data(fileobj: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """An entry's bytes, decompressed here rather than by zipfile, which silently truncates an
    entry to its declared size: an entry that turns out larger than declared is refused."""
    name = info.orig_filename
    fileobj.seek(info.header_offset)
    header = _read_exact(fileobj, _LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise _damaged(f"the zip header of {_show(name)} is missing")
    _, _, flags, method, _, _, _, packed, size, name_length, extra_length = _LOCAL_HEADER.unpack(
        header
    )
    encoding = "utf-8" if info.flag_bits & _ZIP_UTF8 else "cp437"
    if _read_exact(fileobj, name_length) != name.encode(encoding):
        raise _damaged(f"the zip directory and file header of {_show(name)} disagree")
    if flags & _ZIP_ENCRYPTED:
        raise ArchiveRejected(
            "encrypted",
            f"{_show(name)} is password-protected; upload the archive without a password.",
            name,
        )
    sizes_known = not flags & _ZIP_DATA_DESCRIPTOR and 0xFFFFFFFF not in (packed, size)
    if method != info.compress_type or (
        sizes_known and (packed, size) != (info.compress_size, info.file_size)
    ):
        raise _damaged(f"the zip directory and file header of {_show(name)} disagree")
    fileobj.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    remaining = info.compress_size
    declared = info.file_size
    produced = 0
    crc = 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if method == zipfile.ZIP_DEFLATED else None
    while True:
        if inflater is not None and inflater.unconsumed_tail:
            packed_bytes = inflater.unconsumed_tail
        elif remaining > 0:
            packed_bytes = fileobj.read(min(remaining, CHUNK))
            if not packed_bytes:
                raise _cut_short()
            remaining -= len(packed_bytes)
        else:
            packed_bytes = b""
        if inflater is None:
            data = packed_bytes
        else:
            try:
                data = inflater.decompress(packed_bytes, CHUNK)
            except zlib.error as error:
                raise _damaged(f"the compressed data of {_show(name)} is invalid") from error
        produced += len(data)
        if produced > declared:
            raise ArchiveRejected(
                "too-large",
                f"{_show(name)} unpacks to more than the {_size(declared)} its zip header"
                " declares; the archive was stopped.",
                name,
            )
        if data:
            crc = zlib.crc32(data, crc)
            yield data
        finished = inflater.eof if inflater is not None else remaining == 0
        if finished:
            break
        if not data and not packed_bytes:
            raise _cut_short()
    if produced != declared or crc != info.CRC:
        raise _damaged(f"{_show(name)} fails its checksum")


def _scan_zip(fileobj: BinaryIO, checker: _Checker, unpacker: _Unpacker | None) -> None:
    announced, directory_size = _zip_extent(fileobj, checker.archive_size)
    checker.announce(announced)
    if directory_size > max(announced, 1) * _MAX_DIRECTORY_RECORD:
        raise _damaged("its zip directory is far larger than its entries need")
    fileobj.seek(0)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            infos = archive.infolist()
    except UnicodeDecodeError as error:
        raise ArchiveRejected("bad-name", "A name in the zip is not valid UTF-8.") from error
    except (zipfile.BadZipFile, struct.error, EOFError) as error:
        raise _damaged(f"its zip directory is broken ({error})") from error
    if len(infos) != announced:
        raise _damaged("its zip directory and end record disagree on the number of entries")
    for info in infos:
        checker.count()
        entry = _zip_entry(info)
        if entry.kind == "symlink":
            if info.file_size > MAX_LINK_TARGET:
                raise ArchiveRejected(
                    "link-escape",
                    f"The link {_show(entry.name)} has an overlong target.",
                    entry.name,
                )
            raw = b"".join(_zip_data(fileobj, info))
            try:
                target = raw.decode()
            except UnicodeDecodeError as error:
                raise ArchiveRejected(
                    "bad-name", f"The target of link {_show(entry.name)} is not valid UTF-8."
                ) from error
            entry = replace(entry, target=_symlink_target(entry.name, target))
        checker.add(entry)
        if unpacker is not None:
            data = _zip_data(fileobj, info) if entry.kind == "file" else ()
            unpacker.write(entry, data, checker)


# --- tar and tar.gz ---------------------------------------------------------------------------


class _TarFeed:
    """What tarfile reads from: counts the bytes it takes and refuses more than `cap`, so that
    a long-name or pax header claiming gigabytes is never read into memory."""

    def __init__(self, raw: _Reader) -> None:
        self._raw = raw
        self._head = b""
        self.position = 0
        self.cap = TAR_HEADER_ALLOWANCE
        self._recent: deque[bytes] = deque()  # the last bytes read, to look at the final block
        self._recent_start = 0

    def peek(self, size: int) -> bytes:
        self._head += _read_exact(self._raw, size - len(self._head))
        return self._head

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = CHUNK
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._raw.read(size)
        self.position += len(data)
        if self.position > self.cap:
            raise _damaged(
                f"its tar headers are too large (over {_size(TAR_HEADER_ALLOWANCE)} for one entry"
                f" or {_size(TAR_ENTRY_OVERHEAD)} per entry in all)"
            )
        self._recent.append(data)
        while self.position - self._recent_start - len(self._recent[0]) >= TAR_RECENT:
            self._recent_start += len(self._recent.popleft())
        return data

    def block_at(self, offset: int) -> bytes:
        """The tar block at `offset`, if it is among the last bytes read (short if not all read)."""
        start = offset - self._recent_start
        if start < 0:
            return b""
        return b"".join(self._recent)[start : start + tarfile.BLOCKSIZE]

    def drain(self) -> None:
        """Read to the end (checking a gzip stream's CRC and length) but not past the allowance."""
        left = TAR_TRAILER_ALLOWANCE
        while data := self._raw.read(CHUNK):
            left -= len(data)
            if left < 0:
                raise _damaged(f"there is more than {_size(TAR_TRAILER_ALLOWANCE)} after its end")

    def write(self, data: bytes, /) -> int:
        raise OSError("read only")

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, /) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        pass


def _tar_entry(member: tarfile.TarInfo) -> _Entry:
    name = member.name
    parts = _split_path(name)
    kind: EntryKind
    target = ""
    if member.issparse():
        raise _special(name, "a sparse file")
    if member.isreg():
        kind = "file"
    elif member.isdir():
        kind = "dir"
    elif member.issym():
        kind, target = "symlink", _symlink_target(name, member.linkname)
    elif member.islnk():
        kind, target = "hardlink", _hardlink_target(name, member.linkname)
    elif member.ischr():
        raise _special(name, "a character device")
    elif member.isblk():
        raise _special(name, "a block device")
    elif member.isfifo():
        raise _special(name, "a named pipe (FIFO)")
    else:
        raise _special(name, f"an entry of unknown tar type {member.type!r}")
    return _Entry(
        name=name,
        parts=parts,
        kind=kind,
        size=member.size if kind == "file" else 0,
        target=target,
        executable=bool(member.mode & 0o111),
    )


def _tar_damage(error: Exception) -> ArchiveRejected:
    text = str(error)
    if isinstance(error, EOFError) or "unexpected end" in text or "truncated" in text:
        return _cut_short()
    if isinstance(error, gzip.BadGzipFile | zlib.error) or "zlib" in text:
        return _damaged("its gzip data is invalid")
    if "checksum" in text:
        return _damaged("a tar header fails its checksum")
    if "empty" in text:
        return _damaged("it holds no tar entries")
    return _damaged("a tar header is invalid")


def _scan_tar(fileobj: BinaryIO, checker: _Checker, unpacker: _Unpacker | None) -> None:
    fileobj.seek(0)
    _scan_tar_stream(fileobj, checker, unpacker)


def _scan_tar_stream(source: ForwardSource, checker: _Checker, unpacker: _Unpacker | None) -> None:
    """One forward pass over a tar or tar.gz read from its first byte; never seeks."""
    unzipped = gzip.GzipFile(fileobj=source, mode="rb") if checker.kind == "tar.gz" else None
    feed = _TarFeed(unzipped or source)
    # Headers are not file data, so the size checks do not count them: bound them all together.
    limits = checker.limits
    budget = limits.size_limit + limits.max_entries * TAR_ENTRY_OVERHEAD + TAR_HEADER_ALLOWANCE
    try:
        if unzipped is not None and feed.peek(tarfile.BLOCKSIZE)[257:262] != b"ustar":
            raise ArchiveRejected(
                "not-an-archive", f"This gzip file does not hold a tar archive. {UPLOAD_HINT}"
            )
        # "r|": one forward pass over bytes already unzipped here ("r|*" would also open bzip2,
        # xz and a gzip inside the gzip).
        with tarfile.open(fileobj=feed, mode="r|") as tar:
            while True:
                # tar.offset is where the next header starts: the current entry's data is
                # before it, the headers tarfile reads next (into memory) after it.
                feed.cap = min(tar.offset + TAR_HEADER_ALLOWANCE, budget)
                member = tar.next()
                if member is None:
                    break
                feed.cap = min(tar.offset + TAR_HEADER_ALLOWANCE, budget)
                # tarfile keeps every header it read (pax data included); we need none of them.
                tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
                checker.count()
                entry = _tar_entry(member)
                checker.add(entry)
                if unpacker is not None:
                    unpacker.write(entry, _tar_data(tar, member, entry), checker)
            _check_end(feed.block_at(tar.offset))
        if unzipped is not None:
            feed.drain()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise _tar_damage(error) from error
    finally:
        if unzipped is not None:
            unzipped.close()


class StreamedTarCheck:
    """The one-pass check of a tar or tar.gz made while it arrives.

    `run` reads the archive from `source` (in a thread: `source.read` may wait for bytes) and
    keeps the first refusal it meets; `verdict` then settles the checks that needed the
    archive's final size and the quota left at the end, and returns what `inspect_archive`
    would have returned or raises what it would have raised.
    """

    def __init__(self, kind: Kind, limits: ArchiveLimits) -> None:
        if kind == "zip":
            raise ValueError("a zip is checked from its central directory, not in one pass")
        # The quota is known at the end only: until then the size limit is the archive limit.
        self._checker = _Checker(kind, 0, replace(limits, quota_remaining=None), deferred=True)
        self._refusal: ArchiveRejected | None = None

    def run(self, source: ForwardSource) -> None:
        try:
            _scan_tar_stream(source, self._checker, None)
        except ArchiveRejected as refusal:
            self._refusal = refusal

    def verdict(self, archive_size: int, limits: ArchiveLimits) -> ArchiveReport:
        self._checker.settle(archive_size, limits)
        if self._refusal is not None:
            raise self._refusal
        return self._checker.finish()


def _check_end(block: bytes) -> None:
    """tarfile ends a stream quietly at a missing, cut or invalid header after the first: only
    a zero block is a real end of archive."""
    if len(block) < tarfile.BLOCKSIZE:
        raise _cut_short()
    if block.count(0) != len(block):
        try:
            tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as error:
            raise _tar_damage(error) from error
        raise _damaged("a tar header is invalid")


def _tar_data(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: _Entry) -> Iterator[bytes]:
    if entry.kind != "file":
        return
    data = tar.extractfile(member)
    assert data is not None  # a regular file always has data
    while chunk := data.read(CHUNK):
        yield chunk


# --- writing ----------------------------------------------------------------------------------


class _Unpacker:
    """Writes entries into a fresh staging folder inside `destination`, opening every folder
    relative to its parent with O_NOFOLLOW so that no link is ever followed, then moves the app
    root's contents into `destination`, replacing nothing. On failure it removes what it made."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self._made_destination = False
        self._destination_fd = -1
        self._stage = f".ghst-unpack-{secrets.token_hex(8)}"
        self._stage_fd = -1
        self._moved: list[str] = []

    def __enter__(self) -> _Unpacker:
        try:
            self.destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.destination, 0o755)
                self._made_destination = True
            except FileExistsError:
                pass
            self._destination_fd = os.open(self.destination, _DIR_FLAGS)
            if self._made_destination:
                os.fchmod(self._destination_fd, 0o755)
            os.mkdir(self._stage, 0o700, dir_fd=self._destination_fd)
            self._stage_fd = os.open(self._stage, _DIR_FLAGS, dir_fd=self._destination_fd)
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
        else:
            self._close()

    def write(self, entry: _Entry, data: Iterable[bytes], checker: _Checker) -> None:
        parts = entry.parts[:-1] if entry.kind != "dir" else entry.parts
        folder = self._open_folder(parts, entry.name)
        try:
            if entry.kind == "dir":
                return
            name = entry.parts[-1]
            try:
                if entry.kind == "symlink":
                    os.symlink(entry.target, name, dir_fd=folder)
                    return
                fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=folder)
            except FileExistsError as error:
                raise self._in_the_way(entry, folder, name) from error
            if entry.kind == "hardlink":
                data = self._read_back(tuple(entry.target.split("/")))
            with open(fd, "wb") as out:
                for chunk in data:
                    checker.wrote(len(chunk))
                    out.write(chunk)
                os.fchmod(out.fileno(), entry.mode)
        finally:
            os.close(folder)

    def _open_folder(self, parts: tuple[str, ...], entry: str, create: bool = True) -> int:
        """A descriptor of the folder `parts` in the staging folder, made if missing; refuses
        to pass through anything but a real folder."""
        fd = os.dup(self._stage_fd)
        try:
            for depth, part in enumerate(parts, 1):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(child, 0o755)
                except OSError as error:
                    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise self._not_a_folder(entry, fd, parts[:depth]) from error
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_back(self, parts: tuple[str, ...]) -> Iterator[bytes]:
        folder = self._open_folder(parts[:-1], "/".join(parts), create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        finally:
            os.close(folder)
        with open(fd, "rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    @staticmethod
    def _not_a_folder(entry: str, fd: int, path: tuple[str, ...]) -> ArchiveRejected:
        """Why `entry` cannot be written inside `path` (the last part of it in `fd`)."""
        shown = _show("/".join(path))
        if stat.S_ISLNK(os.stat(path[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            return ArchiveRejected(
                "link-escape", f"{_show(entry)} would be written through the link {shown}.", entry
            )
        return ArchiveRejected(
            "path-conflict", f"{_show(entry)} would be written inside {shown}, a file.", entry
        )

    @staticmethod
    def _in_the_way(entry: _Entry, fd: int, name: str) -> ArchiveRejected:
        """Why `entry` cannot be made as `name` in `fd`: a folder that earlier entries sit in."""
        if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
            link = entry.kind == "symlink"
            return ArchiveRejected(
                "link-escape" if link else "path-conflict",
                f"{_show(entry.name)} is a {'link' if link else 'file'}, but the archive also puts"
                " entries inside it.",
                entry.name,
            )
        return ArchiveRejected(
            "path-conflict", f"{_show(entry.name)} appears twice in the archive.", entry.name
        )

    def _in_destination(self, name: str) -> ArchiveRejected:
        existing = os.stat(name, dir_fd=self._destination_fd, follow_symlinks=False)
        if stat.S_ISLNK(existing.st_mode):
            return ArchiveRejected(
                "link-escape",
                f"{_show(name)} is already in the destination as a link; it is never written"
                " through or replaced.",
                name,
            )
        return ArchiveRejected(
            "path-conflict",
            f"{_show(name)} is already in the destination; it is never replaced.",
            name,
        )

    def promote(self, root: tuple[str, ...]) -> None:
        """Move the app root's contents from the staging folder into the destination."""
        source = self._open_folder(root, "/".join(root), create=False)
        try:
            for name in sorted(os.listdir(source)):
                try:
                    os.stat(name, dir_fd=self._destination_fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise self._in_destination(name)
                os.rename(name, name, src_dir_fd=source, dst_dir_fd=self._destination_fd)
                self._moved.append(name)
        finally:
            os.close(source)
        shutil.rmtree(self._stage, dir_fd=self._destination_fd)

    def _discard(self) -> None:
        if self._made_destination:
            shutil.rmtree(self.destination, ignore_errors=True)
        elif self._destination_fd >= 0:
            for name in [self._stage, *self._moved]:
                try:
                    if stat.S_ISDIR(
                        os.stat(name, dir_fd=self._destination_fd, follow_symlinks=False).st_mode
                    ):
                        shutil.rmtree(name, dir_fd=self._destination_fd)
                    else:
                        os.unlink(name, dir_fd=self._destination_fd)
                except OSError:
                    pass
        self._close()

    def _close(self) -> None:
        for fd in (self._stage_fd, self._destination_fd):
            if fd >= 0:
                os.close(fd)
        self._stage_fd = self._destination_fd = -1
