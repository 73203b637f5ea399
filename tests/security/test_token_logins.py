"""Access tokens through OpenSSH: the token is the password (given by SSH_ASKPASS), the user is
the account name. A token logs in for commands and file transfers only, within its scopes and
projects; revoking it closes its open connections; a stolen or guessed one gets nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.identity.access_tokens import CreatedToken, parse_scopes
from core.panel import Panel
from sshd.server import GhstServer
from sshd.session import TOKEN_NO_DASHBOARD
from sshd.sftp import TOKEN_NEEDS_DEPLOY
from tests.actors import acting
from tests.e2e.helpers import new_key, public_line, write_private_key
from tests.e2e.transfers import (
    OPENSSH_OPTIONS,
    Account,
    Result,
    account,
    app_zip,
    eventually,
    versions,
)

CLIENT_TIMEOUT = 30.0
# Revoking a token ends its open connections within this long (issue 12).
REVOKED_WITHIN = 5.0


def token_options(
    server: GhstServer, method: str = "password", log_level: str = "ERROR"
) -> list[str]:
    """OpenSSH answering the password prompt with SSH_ASKPASS, no key, one try (the server's
    banners show from LogLevel=INFO)."""
    assert server.port is not None
    return [
        *("-F", "/dev/null", "-p", str(server.port)),
        *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
        *("-o", f"LogLevel={log_level}", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"),
        *("-o", f"PreferredAuthentications={method}", "-o", "NumberOfPasswordPrompts=1"),
    ]


def askpass_env(tmp_path: Path, secret: str) -> dict[str, str]:
    tmp_path.mkdir(exist_ok=True)
    script = tmp_path / "askpass.sh"
    script.write_text(f"#!/bin/sh\necho '{secret}'\n")
    script.chmod(0o700)
    return {"SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "PATH": "/usr/bin"}


async def run(command: list[str], env: dict[str, str], *, cwd: Path | None = None) -> Result:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
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
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def ssh(
    server: GhstServer,
    tmp_path: Path,
    user: str,
    secret: str,
    *args: str,
    method: str = "password",
    log_level: str = "ERROR",
) -> Result:
    options = token_options(server, method, log_level)
    command = ["/usr/bin/ssh", *options, f"{user}@127.0.0.1", *args]
    return await run(command, askpass_env(tmp_path, secret))


async def sftp(server: GhstServer, tmp_path: Path, user: str, secret: str, commands: str) -> Result:
    batch = tmp_path / "batch.txt"
    batch.write_text(commands)
    options = token_options(server)
    options[options.index("-p")] = "-P"
    # `-b` turns BatchMode on where it stands: the options before it win (OpenSSH takes the
    # first value), so the password prompt stays.
    command = ["/usr/bin/sftp", *options, "-b", str(batch), f"{user}@127.0.0.1"]
    return await run(command, askpass_env(tmp_path, secret), cwd=tmp_path)


async def new_token(
    panel: Panel, who: Account, scopes: str, projects: list[str] | None = None, name: str = "ci"
) -> CreatedToken:
    return await panel.access_tokens.create(
        acting(who.id), name, parse_scopes(scopes), projects=projects
    )


def logged_in_as(result: Result, token: CreatedToken | None = None) -> None:
    """`whoami` ran, as the token (its label and scopes), not as the whole account."""
    assert result.status == 0, result.output
    if token is not None:
        assert f"token {token.token.prefix} of" in result.stdout, result.output


async def test_a_token_is_the_password_for_commands(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = await account(panel, tmp_path, "alice")
    created = await new_token(panel, alice, "read")
    logged_in_as(await ssh(ssh_server, tmp_path, "alice", created.secret, "whoami"), created)
    # OpenSSH's default order asks keyboard-interactive first: the token answers it too.
    logged_in_as(
        await ssh(
            ssh_server, tmp_path, "alice", created.secret, "whoami", method="keyboard-interactive"
        )
    )
    [listed] = await panel.access_tokens.list(acting(alice.id))
    assert listed.last_used_at is not None
    # The server logged the logins by the token's prefix, never its secret.
    assert f"token {created.token.prefix} of alice logged in" in caplog.text
    assert created.secret not in caplog.text


async def test_a_token_never_opens_the_dashboard(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    created = await new_token(panel, alice, "read,logs,deploy,env:write,admin")
    result = await ssh(ssh_server, tmp_path, "alice", created.secret, "-tt")
    assert result.status == 1, result.output
    assert TOKEN_NO_DASHBOARD in result.output.replace("\r\n", " ").replace("\n", " ")
    assert not ssh_server.sessions


async def test_stolen_or_dead_tokens_are_refused(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    await account(panel, tmp_path, "bob")
    created = await new_token(panel, alice, "read")
    # Alice's token with Bob's name, and with a name that has no account (a visitor).
    for username in ("bob", "nobody"):
        result = await ssh(ssh_server, tmp_path, username, created.secret, "whoami")
        assert result.status == 255, result.output
    expired = await new_token(panel, alice, "read", name="expired")
    async with panel.pool.acquire() as conn:
        await conn.execute(
            "UPDATE access_tokens SET created_at = now() - interval '2 days',"
            " expires_at = now() - interval '1 second' WHERE id = $1",
            expired.token.id,
        )
    assert (await ssh(ssh_server, tmp_path, "alice", expired.secret, "whoami")).status == 255
    await panel.access_tokens.revoke(acting(alice.id), "ci")
    assert (await ssh(ssh_server, tmp_path, "alice", created.secret, "whoami")).status == 255


async def test_guessing_tokens_over_ssh_is_throttled(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    created = await new_token(panel, alice, "read")
    for guess in range(panel.settings.login_max_failures):
        forged = created.token.prefix + str(guess) * (
            len(created.secret) - len(created.token.prefix)
        )
        assert (await ssh(ssh_server, tmp_path, "alice", forged, "whoami")).status == 255
    result = await ssh(ssh_server, tmp_path, "alice", created.secret, "whoami", log_level="INFO")
    assert result.status == 255, result.output
    assert "Too many failed logins" in result.stderr


@contextlib.asynccontextmanager
async def open_connection(
    server: GhstServer, tmp_path: Path, user: str, secret: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`ssh -N`: logged in, no channel, until the server closes the connection."""
    command = ["/usr/bin/ssh", *token_options(server), "-N", f"{user}@127.0.0.1"]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=askpass_env(tmp_path, secret),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def token_logins(server: GhstServer, token_id: int) -> int:
    return sum(
        1
        for connection in server.logins
        if connection.login is not None
        and connection.login.token is not None
        and connection.login.token.token.id == token_id
        and connection.session is not None
    )


async def test_revoking_a_token_closes_its_open_connections(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    revoked = await new_token(panel, alice, "read")
    kept = await new_token(panel, alice, "read", name="kept")
    async with (
        open_connection(ssh_server, tmp_path / "a", "alice", revoked.secret) as doomed,
        open_connection(ssh_server, tmp_path / "b", "alice", kept.secret) as alive,
    ):

        async def both_in() -> bool:
            return (
                token_logins(ssh_server, revoked.token.id),
                token_logins(ssh_server, kept.token.id),
            ) == (1, 1)

        await eventually(both_in, "both token logins to be open")
        await panel.access_tokens.revoke(acting(alice.id), "ci")
        await asyncio.wait_for(doomed.wait(), REVOKED_WITHIN)
        assert token_logins(ssh_server, revoked.token.id) == 0
        # The other token's connection is left alone.
        assert alive.returncode is None and token_logins(ssh_server, kept.token.id) == 1


async def test_sftp_needs_the_deploy_scope(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    created = await new_token(panel, alice, "read,logs,env:write")
    result = await sftp(ssh_server, tmp_path, "alice", created.secret, "ls /\n")
    assert result.status != 0, result.output
    assert "shop" not in result.stdout
    assert TOKEN_NEEDS_DEPLOY in result.stderr


async def test_sftp_with_a_project_token_sees_and_touches_only_its_projects(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop", "diary"))
    created = await new_token(panel, alice, "read,deploy", projects=["shop"])
    (tmp_path / "app.zip").write_bytes(app_zip())
    listing = await sftp(ssh_server, tmp_path, "alice", created.secret, "ls /\n")
    assert listing.status == 0, listing.output
    assert "shop" in listing.stdout
    assert "diary" not in listing.stdout
    uploaded = await sftp(ssh_server, tmp_path, "alice", created.secret, "put app.zip /shop/\n")
    assert uploaded.status == 0, uploaded.output
    assert [v.name for v in await versions(panel, alice, "shop")] == ["v1-app.zip"]
    for refused in ("put app.zip /diary/\n", "ls /diary\n", "ls /billing\n", "mkdir /other\n"):
        result = await sftp(ssh_server, tmp_path, "alice", created.secret, refused)
        assert result.status != 0, (refused, result.output)
    assert await versions(panel, alice, "diary") == []
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["diary", "shop"]


async def deploy_key(
    panel: Panel, who: Account, tmp_path: Path, scopes: str, projects: list[str] | None
) -> Path:
    """A new key of `who` added as a deploy key; the path of its private half."""
    key = new_key()
    await panel.keys.add(
        acting(who.id), public_line(key), "ci", scopes=parse_scopes(scopes), projects=projects
    )
    return write_private_key(key, tmp_path / "deploy.key")


def key_command(server: GhstServer, program: str, identity: Path, *args: str) -> list[str]:
    assert server.port is not None
    port = "-P" if program.endswith("sftp") else "-p"
    return [program, *OPENSSH_OPTIONS, "-i", str(identity), port, str(server.port), *args]


async def test_a_deploy_key_logs_in_like_a_token(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop", "diary"))
    identity = await deploy_key(panel, alice, tmp_path, "read,deploy", ["shop"])
    command = key_command(ssh_server, "/usr/bin/ssh", identity, "alice@127.0.0.1")
    logged_in_as(await run([*command, "whoami"], {"PATH": "/usr/bin"}))
    dashboard = await run([*command, "-tt"], {"PATH": "/usr/bin"})
    assert dashboard.status == 1, dashboard.output
    assert TOKEN_NO_DASHBOARD in dashboard.output.replace("\r\n", " ").replace("\n", " ")
    batch = tmp_path / "ls.txt"
    batch.write_text("ls /\n")
    sftp_command = key_command(
        ssh_server, "/usr/bin/sftp", identity, "-b", str(batch), "alice@127.0.0.1"
    )
    listing = await run(sftp_command, {"PATH": "/usr/bin"}, cwd=tmp_path)
    assert listing.status == 0, listing.output
    assert "shop" in listing.stdout and "diary" not in listing.stdout
    # The account's own key still opens everything.
    own = key_command(ssh_server, "/usr/bin/sftp", alice.identity, "-b", str(batch))
    full = await run([*own, "alice@127.0.0.1"], {"PATH": "/usr/bin"}, cwd=tmp_path)
    assert "shop" in full.stdout and "diary" in full.stdout


async def test_a_deploy_key_without_deploy_cannot_transfer(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("shop",))
    identity = await deploy_key(panel, alice, tmp_path, "read,logs", None)
    batch = tmp_path / "ls.txt"
    batch.write_text("ls /\n")
    command = key_command(ssh_server, "/usr/bin/sftp", identity, "-b", str(batch))
    result = await run([*command, "alice@127.0.0.1"], {"PATH": "/usr/bin"}, cwd=tmp_path)
    assert result.status != 0, result.output
    assert TOKEN_NEEDS_DEPLOY in result.stderr


async def test_a_limited_token_is_held_to_its_scopes_and_projects_on_every_command(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    """A CI token for `shop` that may read: it cannot deploy, cannot see `diary` of the same
    account, and cannot reach another account's project, through OpenSSH's `ssh`."""
    alice = await account(panel, tmp_path, "alice")
    bob = await account(panel, tmp_path, "bob")
    for name in ("shop", "diary"):
        await panel.projects.create(acting(alice.id), name)
    await panel.projects.create(acting(bob.id), "bobs")
    created = await new_token(panel, alice, "read", projects=["shop"])

    async def command(*words: str) -> Result:
        return await ssh(ssh_server, tmp_path, "alice", created.secret, "--", *words)

    listed = await command("projects", "list", "--json")
    assert listed.status == 0, listed.output
    assert (
        '"shop"' in listed.stdout and "diary" not in listed.stdout and "bobs" not in listed.stdout
    )
    assert (await command("projects", "info", "shop")).status == 0
    for words in (
        ("deploy", "shop"),  # the token may only read
        ("env", "shop", "set", "A=1"),
        ("projects", "info", "diary"),  # the owner's other project
        ("status", "diary"),
    ):
        refused = await command(*words)
        assert refused.status == 4, (words, refused.output)
        assert refused.stdout == "", (words, refused.output)
    # Another account's project is not even confirmed to exist.
    other = await command("status", "bobs")
    assert other.status in (3, 4), other.output
    assert "bob" not in other.stderr.replace("bobs", "")
