"""Issue 9 point 3: the panel must never read a host file for a tenant.

An uploaded app is a folder the tenant made, symlinks included. Every path the tenant names (the
compose file, build contexts, Dockerfiles, env_files, `extends` files, `.env`, `.dockerignore`)
is resolved the way the kernel resolves it and confined to the app folder; only regular files are
read, and dockerd gets a build context the panel built itself from what it checked.

The upload already refuses links that point out of the archive, devices and FIFOs
(core/archive_checks.py), so what can still reach a deploy is links that stay inside the app and
paths written in the compose file. Tricks an upload cannot carry (FIFOs, /dev/zero,
/proc/self/environ) are tested against core/confined.py directly, with real files on disk, in
both modes: the kernel's openat2 and the panel's own walk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import confined
from core.confined import PathRefused, read_beneath, resolve_dir_beneath

SECRET = "ghst-paths-marker-7f3a9c"


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways of confining a path: the kernel's (where it has openat2) and the panel's walk."""
    if request.param == "openat2":
        assert confined.kernel_confinement(), "this kernel should have openat2 (Linux 5.6+)"
    else:
        monkeypatch.setattr(confined._openat2, "usable", False)
    yield request.param


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """An app folder next to a secret, holding every kind of link and special file a tenant could
    hope to read through."""
    (tmp_path / "secret.key").write_text(SECRET)
    app = tmp_path / "app"
    (app / "sub" / "deeper").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "sub" / "Dockerfile").write_text("FROM scratch\n")
    os.symlink("sub", app / "inside")  # a link that stays inside: fine
    os.symlink("../secret.key", app / "up")
    os.symlink("sub/deeper/../../../secret.key", app / "up-through-dirs")
    os.symlink(str(tmp_path / "secret.key"), app / "absolute")
    os.symlink("/proc/self/environ", app / "environ")
    os.symlink("/proc/self/root/etc/hostname", app / "magic")
    os.symlink("/dev/zero", app / "zero")
    os.symlink("loop", app / "loop")
    os.mkfifo(app / "fifo")
    os.symlink("fifo", app / "fifo-link")
    os.mknod(app / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a real character device
    return app


READABLE = [
    ("Dockerfile", b"FROM scratch\n"),
    ("inside/Dockerfile", b"FROM scratch\n"),
    ("inside/../Dockerfile", b"FROM scratch\n"),
    ("sub/deeper/../Dockerfile", b"FROM scratch\n"),
    ("./inside/./deeper/../Dockerfile", b"FROM scratch\n"),
]


@pytest.mark.parametrize(("relative", "content"), READABLE)
def test_paths_inside_the_app_are_read(
    mode: str, trap: Path, relative: str, content: bytes
) -> None:
    assert read_beneath(trap, relative, limit=1024, what="The Dockerfile") == content


REFUSED = [
    ("up", "leads outside the app folder"),
    ("up-through-dirs", "leads outside the app folder"),
    ("absolute", "leads outside the app folder"),
    ("../secret.key", "leads outside the app folder"),
    ("inside/../../secret.key", "leads outside the app folder"),
    ("inside/deeper/../../../secret.key", "leads outside the app folder"),
    ("environ", "leads outside the app folder"),
    ("magic", "leads outside the app folder"),
    ("zero", "leads outside the app folder"),
    ("loop", "goes through a link the panel does not follow"),
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("fifo-link", "is a named pipe (FIFO), not a regular file"),
    ("null", "is a device, not a regular file"),
    ("sub", "is a folder, not a regular file"),
    ("Dockerfile/x", "goes through something that is not a folder"),
    ("missing", "is not in the app"),
    (str(Path("/etc/hostname")), "is an absolute path"),
    ("/proc/self/environ", "is an absolute path"),
]


@pytest.mark.parametrize(("relative", "message"), REFUSED)
def test_paths_out_of_the_app_or_to_special_files_are_refused(
    mode: str, trap: Path, relative: str, message: str
) -> None:
    with pytest.raises(PathRefused) as refused:
        read_beneath(trap, relative, limit=1 << 20, what="The Dockerfile")
    assert refused.value.message.startswith("The Dockerfile '")
    assert message in refused.value.message
    assert SECRET not in refused.value.message


def test_a_file_larger_than_the_limit_is_refused_without_reading_it_whole(
    mode: str, trap: Path
) -> None:
    (trap / "big").write_bytes(b"x" * 5000)
    with pytest.raises(PathRefused, match="'big' is larger than 4 KiB"):
        read_beneath(trap, "big", limit=4096, what="The env file")
    assert read_beneath(trap, "big", limit=5000, what="The env file") == b"x" * 5000


def test_folders_resolve_inside_the_app_only(mode: str, trap: Path) -> None:
    real = Path(os.path.realpath(trap))
    assert resolve_dir_beneath(trap, "inside", what="The build context") == real / "sub"
    assert resolve_dir_beneath(trap, "inside/deeper/..", what="The build context") == real / "sub"
    assert resolve_dir_beneath(trap, ".", what="The build context") == real
    os.symlink("..", trap / "parent")
    for relative, message in [
        ("parent", "leads outside the app folder"),
        ("inside/../..", "leads outside the app folder"),
        ("Dockerfile", "is a file, not a folder"),
        ("fifo", "is a named pipe (FIFO), not a folder"),
    ]:
        with pytest.raises(PathRefused, match=re.escape(message)):
            resolve_dir_beneath(trap, relative, what="The build context")
