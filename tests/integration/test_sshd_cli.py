"""The `ghst` command as an operator runs it: a real process, real signals, a real client."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from core.errors import AuthenticationError
from core.panel import Panel
from core.settings import Settings
from tests.e2e.terminal import AsyncsshTerminal, KeyboardInteractiveClient
from tests.services import PostgresServer, free_port, temp_root

GHST = Path(sys.executable).parent / "ghst"


def ghst_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GHST_")}
    env.update(
        GHST_DATABASE_URL=settings.database_url,
        GHST_REDIS_URL=settings.redis_url,
        GHST_DATA_DIR=str(settings.data_dir),
        GHST_SSH_HOST="127.0.0.1",
        GHST_SSH_PORT="0",
        GHST_BCRYPT_ROUNDS="4",
        GHST_SHUTDOWN_GRACE="1",
        # The panel's own nginx: a port and a prefix of this test's (workers run as nobody).
        GHST_NGINX_PORT=str(free_port()),
        GHST_NGINX_PREFIX=str(temp_root("ghst-cli-nginx-") / "nginx"),
        GHST_INSTANCE=f"t{uuid.uuid4().hex[:10]}",
    )
    env.update(overrides)
    return env


async def run_ghst(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(GHST),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_migrate_applies_then_reports_up_to_date(
    postgres_server: PostgresServer, settings: Settings
) -> None:
    database = f"ghst_cli_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        await conn.execute(f"CREATE DATABASE {database}")
    finally:
        await conn.close()
    env = ghst_env(settings, GHST_DATABASE_URL=postgres_server.dsn(database))

    status, stdout, _ = await run_ghst("migrate", env=env)
    assert status == 0
    assert "applied 0001_accounts" in stdout

    status, stdout, _ = await run_ghst("migrate", env=env)
    assert status == 0
    assert "up to date" in stdout


async def test_a_bad_setting_is_reported_with_its_exit_code(settings: Settings) -> None:
    status, _, stderr = await run_ghst("serve", env=ghst_env(settings, GHST_SSH_PORT="twenty"))
    assert status == 2  # ValidationError.exit_code
    assert "GHST_SSH_PORT" in stderr
    assert "Traceback" not in stderr


async def test_serve_runs_until_sigterm_then_shuts_down_gracefully(settings: Settings) -> None:
    process = await asyncio.create_subprocess_exec(
        str(GHST),
        "serve",
        env=ghst_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    log: list[str] = []
    port = 0
    terminal: AsyncsshTerminal | None = None
    try:
        while not port:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "ghst serve exited early:\n" + "".join(log)
            log.append(line)
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
        reader = asyncio.create_task(_drain(process.stderr, log))

        terminal = await AsyncsshTerminal.connect(
            port, "newcomer", client_factory=KeyboardInteractiveClient
        )
        await terminal.wait_for("Sign up")

        process.send_signal(signal.SIGTERM)
        await terminal.wait_for("restarting")  # the notice during the grace period
        assert await terminal.wait_closed() == 0
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await reader
        assert "SSH server stopped" in "".join(log)
    finally:
        if terminal is not None:
            await terminal.close()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode())


async def test_operator_blocks_and_unblocks_a_user(panel: Panel, settings: Settings) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    await panel.accounts.sign_up("bob", "bob@example.com", "correct horse battery")
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    env = ghst_env(settings)

    status, out, _ = await run_ghst("user", "block", "alice", env=env)
    assert status == 0 and "blocked alice" in out
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    with pytest.raises(AuthenticationError, match="blocked"):
        await panel.accounts.authenticate("alice", "correct horse battery", "10.0.0.1")

    status, out, _ = await run_ghst("user", "list", env=env)
    assert status == 0
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:]}
    assert rows == {"alice": "blocked", "bob": "active"}

    status, out, _ = await run_ghst("user", "unblock", "alice", env=env)
    assert status == 0 and "unblocked alice" in out
    await panel.accounts.authenticate("alice", "correct horse battery", "10.0.0.1")

    status, _, err = await run_ghst("user", "block", "nobody", env=env)
    # 3: not found, the code the commands over SSH use too (core/errors.py).
    assert (status, err.strip()) == (3, "ghst: No account named 'nobody'.")


async def test_ghst_nginx_serves_the_unknown_host_page_until_sigterm(settings: Settings) -> None:
    env = ghst_env(settings)
    port = int(env["GHST_NGINX_PORT"])
    process = await asyncio.create_subprocess_exec(
        str(GHST), "nginx", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert f"on port {port}" in line, line
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: nothing.localhost\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 404")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
