"""Private PostgreSQL and Redis servers for the test suite: temp data dirs, free loopback ports.

The suite starts them itself so that `pytest` works on a machine where only the binaries are
installed, and nothing touches the system's own services.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run ./scripts/dev test")
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    root: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=postgres_bindir)

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "ghst", "--auth=trust", "-E", "UTF8")
        self.resume()

    def resume(self) -> None:
        """Start the server on its existing data (after `stop`)."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server. "immediate" may drop the last commits (synchronous_commit is off
        for speed); "fast" ends every connection but keeps all committed data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://ghst@127.0.0.1:{self.port}/{database}"


@dataclass
class RedisServer:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def ssh_client_command(port: int, username: str, identity: Path, *extra: str) -> list[str]:
    """OpenSSH's `ssh` to 127.0.0.1:`port` with one key and no user config or known hosts."""
    return [
        "/usr/bin/ssh",
        *("-F", "/dev/null"),
        *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
        *("-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"),
        *("-i", str(identity), "-p", str(port)),
        *extra,
        f"{username}@127.0.0.1",
    ]


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=Service)


@contextlib.contextmanager
def running(make: Callable[[Path], ServiceT], prefix: str) -> Iterator[ServiceT]:
    """A service started in a fresh temporary root, stopped and removed afterwards."""
    root = temp_root(prefix)
    service = make(root)
    service.start()
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def temp_root(prefix: str) -> Path:
    # Under /tmp rather than pytest's tmp_path: the postgres user must be able to reach it.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class MotoServer:
    """moto's S3 over HTTP in its own process, so the objects it keeps in memory are not ours.

    moto checks no signatures: any access key works. Buckets are the tests' to create and drop.
    """

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "moto.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout=60)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
