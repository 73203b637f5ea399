"""Benchmark the SSH dashboard on this machine and print a markdown table.

    .venv/bin/python bench/sessions.py [--runs 20] [--sessions 1,10,100] [--keys 200]

What it does (everything on 127.0.0.1, with its own PostgreSQL and Redis from tests/services.py):

- runs `ghst serve --no-worker` as a subprocess (the real entry point; a Docker instance of its
  own, bench/panel_process.py) and creates a user with an ed25519 key;
- connect to first full frame: OpenSSH's `ssh -tt` in a real pseudo-terminal, from spawning the
  client to the chunk of output that completes the home screen (a pyte screen shows "Signed in
  as bench" and the footer; the output is parsed after it arrives, timed by the chunk that
  completed the frame, since pyte is far slower than a real terminal); median and p90;
- baseline: the same `ssh` client running `true` against OpenSSH's sshd (`/usr/sbin/sshd -D`
  with its own host key and authorized_keys in a temp dir); and, for reference, the same client
  running a command against ghst (no PTY: the usage text, exit status 2), i.e. connecting and
  authenticating without any Textual work; sshd is Debian's openssh-server (`./scripts/dev
  test` installs it; the bench says what is missing before it starts);
- memory per extra idle session: PSS and RSS of the server process (/proc/PID/smaps_rollup)
  with N sessions open on the home screen, minus the same with none open (after one warm-up
  session), divided by N;
- keystroke to redraw with the most sessions open: Up/Down in the home screen's list, from
  writing the key to the pty to the first byte of the redraw arriving; p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from importlib.metadata import version
from pathlib import Path

import asyncssh
import pyte

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import requirements  # noqa: E402
from bench.panel_process import GhstProcess, bench_instance, panel_env  # noqa: E402
from core.panel import Panel  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.actors import acting  # noqa: E402
from tests.services import (  # noqa: E402
    PostgresServer,
    RedisServer,
    free_port,
    ssh_client_command,
    temp_root,
    wait_for_port,
)

SSH = requirements.SSH.program
SSHD = requirements.SSHD.program
USERNAME = "bench"
WIDTH, HEIGHT = 100, 30
HOME_TEXT = f"Signed in as {USERNAME}"
FOOTER_TEXT = "Log out"
TIMEOUT = 30.0
MIB = 1024 * 1024

NEEDS = (
    requirements.SSH,
    requirements.SSH_KEYGEN,
    requirements.SSHD,
    requirements.POSTGRES,
    requirements.REDIS,
)

GOAL_FIRST_FRAME_MS = 250
GOAL_SESSION_MIB = 3
GOAL_KEYSTROKE_P99_MS = 50


def ssh_command(port: int, identity: Path, user: str, *extra: str) -> list[str]:
    return ssh_client_command(port, user, identity, *extra)


class PtyClient:
    """`ssh -tt` in a pseudo-terminal; keeps arrival times of output and a pyte screen."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(WIDTH, HEIGHT)
        self.stream = pyte.ByteStream(self.screen)
        self.process: asyncio.subprocess.Process | None = None
        self.master = -1
        self.started = 0.0
        self.frame_at: float | None = None
        self.last_output_at = 0.0
        self.output_event = asyncio.Event()
        self.parse = True
        self.pending: list[tuple[float, bytes]] = []

    async def start(self, command: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        env = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
        env["TERM"] = "xterm-256color"
        self.started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            "setsid", "-c", *command, stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        arrived = time.perf_counter()
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            self.output_event.set()
            return
        self.last_output_at = arrived
        self.output_event.set()
        if self.parse and self.frame_at is None:
            # Parsed later, in wait_frame: pyte needs tens of milliseconds per frame (a real
            # terminal, microseconds), and parsing here would delay reading the next chunk.
            self.pending.append((arrived, data))

    def home_shown(self) -> bool:
        text = "\n".join(self.screen.display)
        return HOME_TEXT in text and FOOTER_TEXT in text

    async def wait_frame(self) -> float:
        deadline = time.perf_counter() + TIMEOUT
        while self.frame_at is None:
            if time.perf_counter() > deadline:
                raise TimeoutError("no home screen:\n" + "\n".join(self.screen.display))
            self.output_event.clear()
            with contextlib.suppress(TimeoutError):
                # Parse once the output pauses: the frame is the chunk that completed it.
                await asyncio.wait_for(self.output_event.wait(), 0.05)
                continue
            while self.pending and self.frame_at is None:
                arrived, data = self.pending.pop(0)
                self.stream.feed(data)
                if self.home_shown():
                    self.frame_at = arrived
        return self.frame_at - self.started

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(OSError):
                self.send(b"\x11")  # Ctrl+Q: leave the app
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.master = -1


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "Rss"):
            values[name] = int(rest.split()[0])
    return values["Pss"], values["Rss"]


async def settle_memory(pid: int) -> tuple[int, int]:
    """Memory once the server has been idle for a moment (median of a few reads)."""
    await asyncio.sleep(1.5)
    reads = []
    for _ in range(5):
        reads.append(memory_kib(pid))
        await asyncio.sleep(0.2)
    return (
        int(statistics.median(r[0] for r in reads)),
        int(statistics.median(r[1] for r in reads)),
    )


def percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class OpenSSHServer:
    """OpenSSH's sshd on 127.0.0.1 for the baselines (a login, SFTP, scp), its keys under `root`."""

    def __init__(self, root: Path, public_key: str) -> None:
        self.root = root
        self.port = free_port()
        self.public_key = public_key
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        host_key = self.root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.public_key + "\n")
        authorized.chmod(0o644)  # sshd reads it as the login user
        config = self.root / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nPrintMotd no\nPrintLastLog no\n"
            "Subsystem sftp internal-sftp\n"  # the upload bench's baseline
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config), "-p", str(self.port)],
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


BASELINE_USER = "ghst-bench"


def baseline_login(home: Path) -> str:
    """Who runs `true` on the OpenSSH side: a user whose shell is plain /bin/sh.

    As root here, sshd would run `true` through root's bash, which sources ~/.bashrc for ssh
    commands (Debian's bash does) and spends ~180 ms in `pyenv init`: that measures the dotfiles,
    not sshd. As root, a temporary system user (removed at the end) with /bin/sh is used instead.
    """
    if os.geteuid() != 0:
        return os.environ.get("USER", "root")
    subprocess.run(["userdel", BASELINE_USER], capture_output=True)
    subprocess.run(
        [
            *("useradd", "--system", "--no-create-home", "--home-dir", str(home)),
            *("--shell", "/bin/sh", BASELINE_USER),
        ],
        check=True,
    )
    # "*": no password, but not locked (sshd refuses locked accounts without PAM).
    subprocess.run(["usermod", "-p", "*", BASELINE_USER], check=True)
    return BASELINE_USER


def remove_baseline_user() -> None:
    if os.geteuid() == 0:
        subprocess.run(["userdel", BASELINE_USER], capture_output=True)


async def time_ssh_command(
    port: int, identity: Path, user: str, command: str, expect_status: int = 0
) -> float:
    """Wall time of `ssh -T user@127.0.0.1 command`, from spawn to exit."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *ssh_command(port, identity, user, "-T"),
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != expect_status:
        raise RuntimeError(f"ssh {command} exited {process.returncode}: {stderr.decode()}")
    return elapsed


async def open_sessions(count: int, command: list[str]) -> list[PtyClient]:
    clients: list[PtyClient] = []
    for start in range(0, count, 10):
        batch = [PtyClient() for _ in range(min(10, count - start))]
        for client in batch:
            await client.start(command)
        await asyncio.gather(*(client.wait_frame() for client in batch))
        clients += batch
    return clients


async def keystroke_latencies(clients: list[PtyClient], keystrokes: int) -> list[float]:
    """Up/Down on the home screen's list; time until the first byte of the redraw arrives."""
    # Let every dashboard finish loading (its account facts arrive after the first frame).
    await asyncio.sleep(2)
    latencies = []
    probes = clients[:: max(1, len(clients) // 10)][:10]
    for client in probes:
        client.parse = False
    for index in range(keystrokes):
        client = probes[index % len(probes)]
        key = b"\x1b[B" if (index // len(probes)) % 2 == 0 else b"\x1b[A"
        await asyncio.sleep(0.03)
        client.output_event.clear()
        sent = time.perf_counter()
        client.send(key)
        await asyncio.wait_for(client.output_event.wait(), TIMEOUT)
        latencies.append(client.last_output_at - sent)
        # Swallow the rest of the frame before the next probe.
        await asyncio.sleep(0.005)
    return latencies


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def mib(kib: float) -> str:
    return f"{kib / 1024:.2f} MiB"


async def bench(args: argparse.Namespace) -> str:
    pg_root, redis_root = temp_root("ghst-bench-pg-"), temp_root("ghst-bench-redis-")
    work = Path(tempfile.mkdtemp(prefix="ghst-bench-"))
    os.chmod(work, 0o755)  # the baseline login user must reach sshd/authorized_keys
    postgres, redis = PostgresServer(pg_root), RedisServer(redis_root)
    postgres.start()
    redis.start()
    ghst: GhstProcess | None = None
    sshd: OpenSSHServer | None = None
    try:
        settings = Settings(
            data_dir=work / "data",
            database_url=postgres.dsn(),
            redis_url=redis.url(),
            bcrypt_rounds=4,
            instance=bench_instance(),
        )
        panel = await Panel.open(settings)  # migrates
        key = asyncssh.generate_private_key("ssh-ed25519")
        identity = work / "id_ed25519"
        identity.write_bytes(bytes(key.export_private_key("openssh")))
        identity.chmod(0o600)
        public = bytes(key.export_public_key("openssh")).decode().strip()
        try:
            user = await panel.accounts.sign_up(USERNAME, "bench@example.com", "bench password 1")
            await panel.keys.add(acting(user.id), public + " bench", "bench")
        finally:
            await panel.close()

        # Sessions only: no nginx, no deployment worker.
        ghst = GhstProcess(panel_env(settings, dict(os.environ), GHST_NGINX_MANAGED="0"))
        await ghst.start()
        command = ssh_command(ghst.port, identity, USERNAME)
        command.insert(1, "-tt")

        # Warm-up: imports, CSS parsing and caches happen once per process.
        warm = PtyClient()
        await warm.start(command)
        await warm.wait_frame()
        await warm.close()

        first_frames = []
        for _ in range(args.runs):
            client = PtyClient()
            await client.start(command)
            first_frames.append(await client.wait_frame())
            await client.close()

        sshd = OpenSSHServer(work / "sshd", public)
        (work / "sshd").mkdir()
        sshd.start()
        baseline_user = baseline_login(work / "sshd")
        baseline = [
            await time_ssh_command(sshd.port, identity, baseline_user, "true")
            for _ in range(args.runs)
        ]
        # The same login into ghst without the dashboard (no PTY: usage text, exit status 2):
        # what connecting and authenticating cost before any Textual work.
        ghst_exec = [
            await time_ssh_command(ghst.port, identity, USERNAME, "whoami", expect_status=2)
            for _ in range(args.runs)
        ]

        base_pss, base_rss = await settle_memory(ghst.pid)
        memory_rows = []
        clients: list[PtyClient] = []
        for count in args.sessions:
            clients += await open_sessions(count - len(clients), command)
            pss, rss = await settle_memory(ghst.pid)
            memory_rows.append((count, (pss - base_pss) / count, (rss - base_rss) / count))
        latencies = await keystroke_latencies(clients, args.keys)
        open_count = len(clients)
        for start in range(0, len(clients), 20):
            await asyncio.gather(*(client.close() for client in clients[start : start + 20]))
    finally:
        if ghst is not None:
            await ghst.stop()
        if sshd is not None:
            sshd.stop()
        postgres.stop()
        redis.stop()
        remove_baseline_user()
        for path in (pg_root, redis_root, work):
            shutil.rmtree(path, ignore_errors=True)

    first_median = statistics.median(first_frames)
    key_p50, key_p99 = percentile(latencies, 50), percentile(latencies, 99)
    lines = [
        f"ghst SSH dashboard, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, textual {version('textual')}, "
        f"asyncssh {version('asyncssh')}, " + args.ssh_version,
        "",
        "| Measure | Goal | Result | |",
        "|---|---|---|---|",
        f"| Connect to first full dashboard frame, `ssh -tt` (median / p90 of {args.runs}) "
        f"| ≤ {GOAL_FIRST_FRAME_MS} ms median "
        f"| {ms(first_median)} / {ms(percentile(first_frames, 90))} "
        f"| {'✅' if first_median * 1000 <= GOAL_FIRST_FRAME_MS else '❌'} |",
        f"| Baseline: same `ssh`, `true` against OpenSSH sshd (median / p90 of {args.runs}) "
        f"| (reference) | {ms(statistics.median(baseline))} / {ms(percentile(baseline, 90))} "
        "| |",
        f"| Same `ssh` into ghst without the dashboard, `whoami` (no PTY, exit 2) "
        f"| (reference) | {ms(statistics.median(ghst_exec))} / {ms(percentile(ghst_exec, 90))} "
        "| |",
    ]
    for count, pss, rss in memory_rows:
        ok = pss <= GOAL_SESSION_MIB * 1024
        lines.append(
            f"| Memory per extra idle session at {count} open (PSS / RSS of the server) "
            f"| ≤ {GOAL_SESSION_MIB} MiB | {mib(pss)} / {mib(rss)} | {'✅' if ok else '❌'} |"
        )
    lines.append(
        f"| Keystroke to redraw with {open_count} sessions open (p50 / p99 of {len(latencies)}) "
        f"| p99 ≤ {GOAL_KEYSTROKE_P99_MS} ms | {key_p50 * 1000:.1f} ms / {key_p99 * 1000:.1f} ms "
        f"| {'✅' if key_p99 * 1000 <= GOAL_KEYSTROKE_P99_MS else '❌'} |"
    )
    lines.append("")
    lines.append(
        f"Server process with no session open (after one warm-up session): "
        f"PSS {mib(base_pss)}, RSS {mib(base_rss)}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="connections timed (default 20)")
    parser.add_argument(
        "--sessions",
        default="1,10,100",
        help="session counts to measure memory at, ascending (default 1,10,100)",
    )
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed (default 200)")
    args = parser.parse_args()
    requirements.require("bench/sessions.py", NEEDS)
    args.sessions = [int(part) for part in args.sessions.split(",")]
    args.ssh_version = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    print(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
