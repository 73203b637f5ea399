"""A stranger's first contact with ghst: the README's start command on a fresh clone.

The repository is cloned (committed HEAD) into a private temp folder (mode 0700, as /root is),
`./scripts/dev start` runs there exactly as the README says, on ports of its own so that a
developer's panel on the default ports is untouched, and OpenSSH's `ssh` in a real terminal must
reach the sign-up screen for a name nobody has. Then the panel gets Ctrl+C (SIGINT to its
process group), `./scripts/dev stop` runs, and no process of the clone may be left: not its
PostgreSQL, Redis, nginx or panel. The same again after a second start, with the panel killed
outright. The clone makes its own .venv (from the local wheel cache), so the test has a
generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import new_key, write_private_key
from tests.e2e.terminal import OpenSSHTerminal, openssh_command
from tests.security.first_run import Clone, leftover_processes, make_clone, remove_clone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

START_TIMEOUT = 1200.0  # a first start installs the clone's .venv
STOP_TIMEOUT = 60.0


async def run_dev(clone: Clone, command: str) -> tuple[int, str]:
    """`./scripts/dev <command>` in the clone: (exit status, output)."""
    process = await asyncio.create_subprocess_exec(
        "./scripts/dev",
        command,
        cwd=clone.path,
        env=clone.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    output, _ = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_ssh(panel: asyncio.subprocess.Process, clone: Clone) -> None:
    """Until the panel's SSH port accepts connections; fails if the start command exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not await asyncio.to_thread(answers, clone.ssh_port):
        if panel.returncode is not None:
            raise AssertionError(f"./scripts/dev start exited with status {panel.returncode}")
        if loop.time() > deadline:
            raise AssertionError(f"nothing listens on the SSH port after {START_TIMEOUT:.0f} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(panel.wait(), 0.5)


@contextlib.contextmanager
def showing_start_output(clone: Clone) -> Iterator[None]:
    """On any failure (a timeout included), the start command's output goes into the report."""
    try:
        yield
    except BaseException:
        print(f"--- output of ./scripts/dev start in {clone.path} ---\n{clone.start_output()}")
        raise


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def readable_by_nobody(path: Path) -> bool:
    check = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(path)])
    return check.returncode == 0


async def start_panel(clone: Clone) -> asyncio.subprocess.Process:
    """`./scripts/dev start` in the clone, its output appended to the clone's start log."""
    with clone.start_log.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            "./scripts/dev",
            "start",
            cwd=clone.path,
            env=clone.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl+C reaches its process group, not ours
        )


async def assert_nothing_left(clone: Clone) -> None:
    left = await asyncio.to_thread(leftover_processes, clone.root)
    assert left == [], f"processes of the clone left running: {left}"
    busy = [port for port in clone.ports if await asyncio.to_thread(answers, port)]
    assert busy == [], f"ports still answering after stop: {busy}"


async def test_readme_start_command_on_a_fresh_clone_reaches_sign_up() -> None:
    instance = f"firstrun{uuid.uuid4().hex[:8]}"
    clone = await asyncio.to_thread(make_clone, instance)
    panel: asyncio.subprocess.Process | None = None
    try:
        with showing_start_output(clone):
            panel = await start_panel(clone)
            await wait_for_ssh(panel, clone)

            # A stranger with a key the panel has never seen, under a name nobody has.
            identity = write_private_key(new_key(), clone.root / "id_ed25519")
            terminal = await OpenSSHTerminal.start(
                openssh_command(clone.ssh_port, "stranger", identity), width=100, height=30
            )
            try:
                await terminal.wait_for("Create account", within=60)
                await terminal.wait_for("stranger")
                await terminal.wait_for("Attach key SHA256:")
            finally:
                await terminal.close()

            # Secrets stayed private: the data folder is its owner's, the keys 0600, and
            # nginx's workers' account reads none of them.
            data = clone.path / "var" / "data"
            assert mode(data) == 0o700
            for secret in ("jwt.key", "ssh_host_ed25519_key"):
                assert mode(data / secret) == 0o600, secret
                if os.geteuid() == 0:
                    assert not readable_by_nobody(data / secret), secret
            assert (clone.path / "var" / "nginx" / "nginx.conf").is_file()

            # Ctrl+C stops the panel (and its nginx); `stop` stops PostgreSQL and Redis.
            os.killpg(panel.pid, signal.SIGINT)
            status = await asyncio.wait_for(panel.wait(), STOP_TIMEOUT)
            assert status == 0, f"the panel exited with status {status} on Ctrl+C"
            status, output = await run_dev(clone, "stop")
            assert status == 0, f"./scripts/dev stop failed:\n{output}"
            await assert_nothing_left(clone)

            # Starting again works; a panel killed outright leaves its nginx (a session of its
            # own), and `stop` stops that too.
            panel = await start_panel(clone)
            await wait_for_ssh(panel, clone)
            os.killpg(panel.pid, signal.SIGKILL)
            await asyncio.wait_for(panel.wait(), STOP_TIMEOUT)
            status, output = await run_dev(clone, "stop")
            assert status == 0, f"./scripts/dev stop failed:\n{output}"
            await assert_nothing_left(clone)
    finally:
        if panel is not None and panel.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(panel.pid, signal.SIGKILL)
            await panel.wait()
        await asyncio.to_thread(remove_clone, clone)
