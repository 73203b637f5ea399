"""The tar a build sends dockerd, made by the panel from what it checked in the app folder.

The docker SDK, given a folder, follows links on its own: it reads `.dockerignore` and a
Dockerfile outside the context through whatever links the tenant put in the app, and sends what
it read to dockerd (whose error messages then show it in the build log). So the panel writes the
context itself:

- the context folder and its Dockerfile are resolved with `core.confined` (the kernel's rules,
  never leaving the app folder; the Dockerfile never leaving the context);
- folders and regular files go in as they are, symbolic links as links (never followed), and
  anything else (FIFO, device, socket) is refused;
- `.dockerignore` is read the same way and applied here, with the SDK's own pattern matcher;
- the Dockerfile dockerd reads is a copy under a name of the panel's (possibly with one LABEL line
  appended by `edit`), hidden from COPY by the `.dockerignore` dockerd gets, as the SDK does;
- the tar is written to a file given by the caller, never held whole in memory.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from docker.utils.build import PatternMatcher

from core.confined import (
    PathRefused,
    kind_of,
    open_dir_beneath,
    quoted,
    read_beneath,
    read_beneath_if_present,
    resolve_dir_beneath,
)

MAX_DOCKERFILE = 1 << 20
MAX_DOCKERIGNORE = 1 << 20
CONTEXT = "the build context folder"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass(frozen=True)
class ContextTar:
    dockerfile: str  # the Dockerfile's name inside the tar, for dockerd
    edited: bool  # `edit` changed the Dockerfile (its labels are in it)


# The image policy's pinned copies of a Dockerfile (core/runtime/image_policy.py) start with this: the
# panel's own files, never part of what a build may COPY.
PINNED_PREFIX = ".ghst-pinned"


def write_context(
    out: IO[bytes],
    root: Path,
    context: str,
    dockerfile: str,
    *,
    edit: Callable[[str], str | None] | None = None,
    private: bool = False,
) -> ContextTar:
    """Write the build context `context` (a folder inside `root`) to `out` as a tar.

    `dockerfile` is relative to the context and must stay inside it. `edit` may return a new text
    for the Dockerfile (None: unchanged). A `private` Dockerfile is the panel's own file (the
    pinned copy of the image policy): it is left out of the context, so COPY never sees it. Raises PathRefused with a message for the user.
    Blocking: call it in a thread.
    """
    folder = resolve_dir_beneath(root, context, what="The build context")
    original = read_beneath(
        folder, dockerfile, limit=MAX_DOCKERFILE, what="The Dockerfile", inside=CONTEXT
    )
    edited = None
    if edit is not None:
        try:
            edited = edit(original.decode("utf-8"))
        except UnicodeDecodeError:
            edited = None
    ignore = read_beneath_if_present(
        folder, ".dockerignore", limit=MAX_DOCKERIGNORE, what="The .dockerignore", inside=CONTEXT
    )
    patterns = _patterns(ignore)
    name = f".ghst-dockerfile-{secrets.token_hex(8)}"
    # dockerd drops the files this `.dockerignore` names from the context after reading the
    # Dockerfile, so COPY never sees the panel's copy (the same trick as the SDK's).
    extra = {
        ".dockerignore": "\n".join([*(patterns or [".dockerignore"]), name]).encode(),
        name: edited.encode("utf-8") if edited is not None else original,
    }
    # As with docker's CLI, an excluded Dockerfile is not in the context: COPY cannot see it.
    matcher = PatternMatcher(patterns)
    dir_fd = open_dir_beneath(root, context, what="The build context")
    try:
        top = os.open(".", _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            left_out = {*extra, dockerfile} if private else set(extra)
            _Writer(tar, matcher, left_out).folder(top, "")
            for extra_name, data in extra.items():
                info = tarfile.TarInfo(extra_name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    except OSError as error:
        raise PathRefused(
            f"The build context {quoted(context)} could not be read: {error.strerror or error}."
        ) from None
    except re.error as error:
        raise PathRefused(
            f"The .dockerignore has a pattern that cannot be read: {error}."
        ) from None
    finally:
        os.close(top)
    out.seek(0)
    return ContextTar(dockerfile=name, edited=edited is not None)


def _patterns(text: bytes | None) -> list[str]:
    if text is None:
        return []
    lines = (line.strip() for line in text.decode("utf-8", "replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class _Writer:
    """Walks the context folder by descriptors (no path is ever looked up twice by name)."""

    def __init__(self, tar: tarfile.TarFile, matcher: PatternMatcher, replaced: set[str]) -> None:
        self.tar = tar
        self.matcher = matcher
        self.replaced = replaced  # top-level names the panel writes itself

    def folder(self, fd: int, prefix: str) -> None:
        for name in sorted(os.listdir(fd)):
            path = f"{prefix}{name}"
            if not prefix and name in self.replaced:
                continue
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            excluded = self.matcher.matches(path)
            if not excluded:
                self.entry(fd, name, path, info)
            if stat.S_ISDIR(info.st_mode) and (not excluded or self._reincluded(path)):
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    self.folder(child, f"{path}/")
                finally:
                    os.close(child)

    def _reincluded(self, path: str) -> bool:
        """Whether a `!pattern` may bring back something under the excluded folder `path`."""
        return any(
            pattern.exclusion and pattern.cleaned_pattern.startswith(path)
            for pattern in self.matcher.patterns
        )

    def entry(self, fd: int, name: str, path: str, info: os.stat_result) -> None:
        entry = tarfile.TarInfo(path)
        entry.mode = stat.S_IMODE(info.st_mode)
        entry.mtime = max(0, min(int(info.st_mtime), 8**11 - 1))
        entry.uid, entry.gid = info.st_uid, info.st_gid
        if stat.S_ISDIR(info.st_mode):
            entry.type = tarfile.DIRTYPE
            self.tar.addfile(entry)
        elif stat.S_ISLNK(info.st_mode):
            entry.type = tarfile.SYMTYPE
            entry.linkname = os.readlink(name, dir_fd=fd)
            self.tar.addfile(entry)
        elif stat.S_ISREG(info.st_mode):
            file_fd = os.open(name, _FILE_FLAGS, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as file:
                opened = os.fstat(file_fd)
                if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                    raise PathRefused(f"{quoted(path)} changed while the build context was read.")
                entry.size = opened.st_size
                self.tar.addfile(entry, file)
        else:
            raise PathRefused(
                f"The build context holds {quoted(path)}, which is {kind_of(info.st_mode)}: only "
                "files, folders and links can be sent to a build."
            )
