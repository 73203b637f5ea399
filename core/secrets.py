"""Secrets generated on first run and kept in the data folder, readable by the owner only."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def load_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """Return the secret at `path`, creating it (mode 0600) if it does not exist yet.

    Created with O_EXCL under a temporary name and linked into place, so two processes starting
    at once agree on one secret and a crash never leaves a half-written file.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(generate())
            handle.flush()
            os.fsync(handle.fileno())
        # Another process may have won the race: then its secret is the one.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes()


def random_key() -> bytes:
    return secrets.token_urlsafe(48).encode()
