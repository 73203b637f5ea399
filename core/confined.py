"""Files a tenant names, opened the way the kernel resolves them and confined to the app folder.

A path in an uploaded app (a build context, a Dockerfile, an env_file...) is the tenant's text,
and the app folder may hold symlinks the tenant made. Checking such a path as text and then
letting the kernel follow the links reads whatever the links point at, as root: the panel's own
secrets, `/proc/self/environ`, or `/dev/zero` until memory runs out. So every such path is opened
here, component by component, the way the kernel resolves it, and never beyond `root`:

- with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` where the kernel has it (Linux 5.6+):
  `..` above the root, absolute symlinks and `/proc` magic links all fail inside the kernel;
- else by walking the components with `O_NOFOLLOW`, reading each symlink and resolving it
  ourselves, with the same rules (physical `..`, at most 40 links, nothing absolute).

Only regular files are read (opened with `O_NONBLOCK`, so a FIFO never blocks), and at most
`limit` bytes of them. Every refusal is a `ValidationError` whose message names the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from core.errors import ValidationError

APP_FOLDER = "the app folder"
MAX_LINKS = 40  # the kernel's own limit of symlinks followed in one lookup

# openat2 has the same number on every architecture that uses the common syscall table.
_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437, "ppc64le": 437}
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08

_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class PathRefused(ValidationError):
    """A path the tenant named leads outside the app folder, or to something not readable."""

    title = "Path refused"

    def __init__(self, message: str, title: str | None = None, *, missing: bool = False) -> None:
        super().__init__(message, title)
        self.missing = missing  # nothing at that path, as opposed to something refused


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class _Openat2:
    """openat2 through libc's syscall(); `usable` is False where the kernel lacks it."""

    def __init__(self) -> None:
        self.number = _OPENAT2.get(platform.machine())
        self.libc: ctypes.CDLL | None = None
        self.usable = False
        if self.number is None:
            return
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
            fd = self.open(os.open("/", _PATH_FLAGS), ".", _PATH_FLAGS, close_dir=True)
        except (OSError, AttributeError):
            return
        os.close(fd)
        self.usable = True

    def open(self, dir_fd: int, relative: str, flags: int, *, close_dir: bool = False) -> int:
        assert self.libc is not None and self.number is not None
        how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
        try:
            for _ in range(8):  # EAGAIN: a rename raced a `..`; the kernel asks us to retry
                fd = self.libc.syscall(
                    ctypes.c_long(self.number),
                    ctypes.c_int(dir_fd),
                    ctypes.c_char_p(os.fsencode(relative)),
                    ctypes.byref(how),
                    ctypes.c_size_t(ctypes.sizeof(how)),
                )
                if fd >= 0:
                    return int(fd)
                code = ctypes.get_errno()
                if code != errno.EAGAIN:
                    break
            raise OSError(code, os.strerror(code), relative)
        finally:
            if close_dir:
                os.close(dir_fd)


_openat2 = _Openat2()


def kernel_confinement() -> bool:
    """Whether paths are confined by the kernel (openat2) rather than by the walk."""
    return _openat2.usable


def read_beneath(
    root: Path, relative: str, *, limit: int, what: str, inside: str = APP_FOLDER
) -> bytes:
    """The bytes of the regular file `relative` inside `root`, at most `limit` of them.

    `what` names the file for the user ("The Dockerfile", "The env file"), `inside` names `root`.
    Raises PathRefused when the path leads out of `root`, is missing, is not a regular file or is
    larger than `limit`.
    """
    with open_file_beneath(root, relative, what=what, inside=inside) as fd:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        raise PathRefused(f"{what} {quoted(relative)} is larger than {_amount(limit)}.")
    return b"".join(chunks)


def read_beneath_if_present(
    root: Path, relative: str, *, limit: int, what: str, inside: str = APP_FOLDER
) -> bytes | None:
    """As read_beneath, but None when nothing is at that path (a dangling link included)."""
    try:
        return read_beneath(root, relative, limit=limit, what=what, inside=inside)
    except PathRefused as refused:
        if refused.missing:
            return None
        raise


def is_file_beneath(root: Path, relative: str) -> bool:
    """Whether `relative` resolves, inside `root`, to a regular file (links followed inside)."""
    try:
        fd = _resolve(root, relative)
    except (OSError, PathRefused):
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def is_dir_beneath(root: Path, relative: str) -> bool:
    """Whether `relative` resolves, inside `root`, to a directory (links followed inside)."""
    try:
        fd = _resolve(root, relative)
    except (OSError, PathRefused):
        return False
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_file_beneath(
    root: Path, relative: str, *, what: str, inside: str = APP_FOLDER
) -> Iterator[int]:
    """A read-only descriptor of the regular file `relative` inside `root` (closed on exit)."""
    path_fd = _resolve_or_refuse(root, relative, what, inside)
    try:
        info = os.fstat(path_fd)
        if not stat.S_ISREG(info.st_mode):
            raise PathRefused(
                f"{what} {quoted(relative)} is {kind_of(info.st_mode)}, not a regular file."
            )
        # Reopened for reading only now that it is known to be a regular file: opening a
        # device or a FIFO can have effects of its own.
        fd = _reopen(root, relative, what, inside)
    finally:
        os.close(path_fd)
    try:
        again = os.fstat(fd)
        if (again.st_dev, again.st_ino) != (info.st_dev, info.st_ino):
            raise PathRefused(f"{what} {quoted(relative)} changed while it was being read.")
        yield fd
    finally:
        os.close(fd)


def open_dir_beneath(root: Path, relative: str, *, what: str, inside: str = APP_FOLDER) -> int:
    """An `O_PATH` descriptor of the directory `relative` inside `root`; the caller closes it."""
    fd = _resolve_or_refuse(root, relative, what, inside)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISDIR(mode):
        os.close(fd)
        raise PathRefused(f"{what} {quoted(relative)} is {kind_of(mode)}, not a folder.")
    return fd


def resolve_dir_beneath(root: Path, relative: str, what: str, *, inside: str = APP_FOLDER) -> Path:
    """The real path of the directory `relative` inside `root`, links resolved inside it.

    The app folder is the panel's own copy: nothing changes it while the panel reads it, so the
    path stays what was checked.
    """
    fd = open_dir_beneath(root, relative, what=what, inside=inside)
    try:
        found = os.fstat(fd)
    finally:
        os.close(fd)
    parts = _walk_names(root, relative, what, inside)
    path = Path(os.path.realpath(root)).joinpath(*parts)
    mine = os.stat(path, follow_symlinks=False)
    if (mine.st_dev, mine.st_ino) != (found.st_dev, found.st_ino):
        raise PathRefused(f"{what} {quoted(relative)} changed while it was being read.")
    return path


def resolve_file_beneath(root: Path, relative: str, *, what: str, inside: str = APP_FOLDER) -> str:
    """`relative` as a normalised path inside `root` with every link resolved; must be a file."""
    with open_file_beneath(root, relative, what=what, inside=inside):
        pass
    return "/".join(_walk_names(root, relative, what, inside))


# --- resolution -------------------------------------------------------------------------------


def _check_text(relative: str, what: str, inside: str) -> None:
    if "\x00" in relative:
        raise PathRefused(f"{what} {quoted(relative)} has a NUL byte in its name.")
    if relative.startswith("/"):
        raise PathRefused(
            f"{what} {quoted(relative)} is an absolute path: name a path inside {inside}."
        )


def _resolve(root: Path, relative: str) -> int:
    """An `O_PATH` descriptor of `relative` inside `root`; OSError as the kernel reports it."""
    if "\x00" in relative or relative.startswith("/"):
        raise OSError(errno.EXDEV, "absolute path", relative)
    root_fd = os.open(root, _PATH_FLAGS | os.O_DIRECTORY)
    try:
        if _openat2.usable:
            return _openat2.open(root_fd, relative or ".", _PATH_FLAGS)
        stack = _walk(root_fd, relative)
        try:
            return os.dup(stack[-1][0])
        finally:
            for fd, _ in stack[1:]:
                os.close(fd)
    finally:
        os.close(root_fd)


def _resolve_or_refuse(root: Path, relative: str, what: str, inside: str) -> int:
    _check_text(relative, what, inside)
    try:
        return _resolve(root, relative)
    except OSError as error:
        raise _refusal(error, relative, what, inside) from None


def _reopen(root: Path, relative: str, what: str, inside: str) -> int:
    root_fd = os.open(root, _PATH_FLAGS | os.O_DIRECTORY)
    try:
        if _openat2.usable:
            return _openat2.open(root_fd, relative, _READ_FLAGS)
        *parents, (_, name) = _walk(root_fd, relative, open_last=False)
        parent_fd = parents[-1][0] if parents else root_fd
        try:
            return os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
        finally:
            for fd, _ in parents[1:]:
                os.close(fd)
    except OSError as error:
        raise _refusal(error, relative, what, inside) from None
    finally:
        os.close(root_fd)


def _walk_names(root: Path, relative: str, what: str, inside: str) -> list[str]:
    root_fd = os.open(root, _PATH_FLAGS | os.O_DIRECTORY)
    try:
        stack = _walk(root_fd, relative)
    except OSError as error:
        raise _refusal(error, relative, what, inside) from None
    finally:
        os.close(root_fd)
    for fd, _ in stack[1:]:
        os.close(fd)
    return [name for _, name in stack[1:]]


def _walk(root_fd: int, relative: str, *, open_last: bool = True) -> list[tuple[int, str]]:
    """Resolve `relative` below `root_fd` as the kernel would, never leaving it.

    Returns the stack of (O_PATH descriptor, name) from the root (a borrowed `root_fd`, name "")
    to the object; the caller closes all but the first. With `open_last=False` the last
    entry's descriptor is -1 (not opened): the caller opens that name itself with O_NOFOLLOW.
    """
    stack: list[tuple[int, str]] = [(root_fd, "")]
    pending = deque(relative.split("/"))
    links = 0
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if not stat.S_ISDIR(os.fstat(stack[-1][0]).st_mode):
                    raise OSError(errno.ENOTDIR, "not a directory", relative)
                if len(stack) == 1:
                    raise OSError(errno.EXDEV, "leads above the root", relative)
                os.close(stack.pop()[0])
                continue
            parent = stack[-1][0]
            if not stat.S_ISDIR(os.fstat(parent).st_mode):
                raise OSError(errno.ENOTDIR, "not a directory", relative)
            fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many links", relative)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    raise OSError(errno.EXDEV, "absolute link", relative)
                pending.extendleft(reversed(target.split("/")))
                continue
            stack.append((fd, name))
            if pending and any(part not in ("", ".") for part in pending):
                continue
            if pending and not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.ENOTDIR, "not a directory", relative)
        if not open_last and len(stack) > 1:
            fd, name = stack.pop()
            os.close(fd)
            stack.append((-1, name))
        return stack
    except BaseException:
        for fd, _ in stack[1:]:
            if fd >= 0:
                os.close(fd)
        raise


def _refusal(error: OSError, relative: str, what: str, inside: str) -> PathRefused:
    shown = quoted(relative)
    if error.errno == errno.EXDEV:
        return PathRefused(f"{what} {shown} leads outside {inside} (through '..' or a link).")
    if error.errno == errno.ELOOP:
        return PathRefused(
            f"{what} {shown} goes through a link the panel does not follow (a loop, too many "
            "links, or a link to a special file)."
        )
    if error.errno == errno.ENOENT:
        return PathRefused(f"{what} {shown} is not in {inside}.", missing=True)
    if error.errno == errno.ENOTDIR:
        return PathRefused(f"{what} {shown} goes through something that is not a folder.")
    if error.errno == errno.ENAMETOOLONG:
        return PathRefused(f"{what} {shown} is too long a path.")
    return PathRefused(f"{what} {shown} cannot be read ({os.strerror(error.errno or 0)}).")


def kind_of(mode: int) -> str:
    """What a file of this mode is, for a message ("a named pipe (FIFO)", "a device"...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _amount(limit: int) -> str:
    if limit >= 1 << 20 and limit % (1 << 20) == 0:
        return f"{limit >> 20} MiB"
    if limit >= 1 << 10 and limit % (1 << 10) == 0:
        return f"{limit >> 10} KiB"
    return f"{limit} bytes"


def quoted(text: str) -> str:
    """A tenant's path for a message: quoted, unprintable characters as ?, never too long."""
    shown = text if len(text) <= 200 else text[:199] + "…"
    return "'" + "".join(ch if ch.isprintable() else "?" for ch in shown) + "'"
