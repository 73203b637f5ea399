"""A fresh clone of this repository on ports of its own, and the processes it leaves behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
# Started by `start` when nothing answers, and meant to keep running: never a leftover.
SHARED_DAEMONS = ("dockerd", "containerd")


@dataclass
class Clone:
    root: Path  # a private temp folder (mode 0700), as /root is
    path: Path  # the clone itself
    env: dict[str, str]
    pg_port: int
    redis_port: int
    ssh_port: int
    nginx_port: int

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.pg_port, self.redis_port, self.ssh_port, self.nginx_port)

    @property
    def start_log(self) -> Path:
        return self.root / "start.log"

    def start_output(self) -> str:
        try:
            return self.start_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(the start command never ran)"


def make_clone(instance: str) -> Clone:
    """`git clone` of this repository's committed HEAD into a new private temp folder.

    The environment has no GHST_* setting of the caller's, free ports, and an instance name of
    its own, so the clone's deployment worker never looks at anyone else's containers."""
    root = Path(tempfile.mkdtemp(prefix="ghst-first-run-"))
    path = root / "ghst"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(path)],
        check=True,
        capture_output=True,
    )
    ports = [free_port() for _ in range(4)]
    while len(set(ports)) < 4:
        ports = [free_port() for _ in range(4)]
    pg_port, redis_port, ssh_port, nginx_port = ports
    env = {key: value for key, value in os.environ.items() if not key.startswith("GHST_")}
    env.update(
        GHST_PG_PORT=str(pg_port),
        GHST_REDIS_PORT=str(redis_port),
        GHST_SSH_PORT=str(ssh_port),
        GHST_NGINX_PORT=str(nginx_port),
        GHST_INSTANCE=instance,
    )
    return Clone(root, path, env, pg_port, redis_port, ssh_port, nginx_port)


def _process_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def _belongs_to(pid: int, root: Path) -> bool:
    """Whether a process works in `root` or names it on its command line."""
    folder = str(root)
    with contextlib.suppress(OSError):
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if cwd == folder or cwd.startswith(folder + "/"):
            return True
    with contextlib.suppress(OSError):
        return folder in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return False


def leftover_pids(root: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if _belongs_to(pid, root) and _process_name(pid) not in SHARED_DAEMONS:
            pids.append(pid)
    return sorted(pids)


def leftover_processes(root: Path) -> list[str]:
    """`pid name` of every process of the clone still running."""
    return [f"{pid} {_process_name(pid)}" for pid in leftover_pids(root)]


def remove_clone(clone: Clone) -> None:
    """Whatever a failed run left: `./scripts/dev stop`, then the clone's own processes (found
    by its folder) are killed, then the folder goes."""
    if (clone.path / "scripts" / "dev").exists():
        subprocess.run(
            [str(clone.path / "scripts" / "dev"), "stop"],
            cwd=clone.path,
            env=clone.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
    for pid in leftover_pids(clone.root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while leftover_pids(clone.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    shutil.rmtree(clone.root, ignore_errors=True)
