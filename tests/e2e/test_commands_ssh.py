"""The command interface through OpenSSH's `ssh`, as a CI job uses it: upload from stdin,
deploy and wait, the site answers through nginx; exit codes; a client that leaves mid-upload."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import asyncssh
import pytest

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import acting
from tests.e2e.helpers import running_server
from tests.e2e.transfers import Account, Result, account, app_zip, eventually, run, visitor
from tests.fixtures_deploy import app_tar, page_app, running_worker
from tests.fixtures_nginx import NginxRouter, http_request
from tests.services import ssh_client_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def ssh(server: GhstServer, who: Account, *command: str) -> list[str]:
    """`ssh ... -- <command>`: the `--` keeps ssh from taking the command's flags."""
    assert server.port is not None
    return [*ssh_client_command(server.port, who.name, who.identity), "--", *command]


async def test_a_ci_script_uploads_deploys_waits_and_the_site_answers(
    deploy_panel: Panel, nginx_router: NginxRouter, base_image: str, tmp_path: Path
) -> None:
    panel = deploy_panel
    alice = await account(panel, tmp_path, "alice", projects=("site",))
    page = "deployed from CI"
    archive = app_tar(page_app(base_image, page))
    async with running_server(panel) as server, running_worker(panel):
        uploaded = await run(ssh(server, alice, "upload", "site"), stdin=archive)
        assert (uploaded.status, uploaded.stdout) == (0, "v1-app.tar\n"), uploaded.stderr
        deployed = await run(ssh(server, alice, "deploy", "site", "--wait", "--json"))
        assert deployed.status == 0, deployed.stderr
        result = json.loads(deployed.stdout)
        assert (result["state"], result["version"]) == ("running", "v1-app.tar")
        assert "is live" in deployed.stderr
        status = await run(ssh(server, alice, "status", "site", "--json"))
        assert json.loads(status.stdout)["state"] == "running"
    answer = await http_request(nginx_router, "site")
    assert (answer.status, answer.text.strip()) == (200, page)


async def test_a_failed_build_exits_1_with_its_log_on_stderr(
    deploy_panel: Panel, tmp_path: Path, base_image: str
) -> None:
    panel = deploy_panel
    alice = await account(panel, tmp_path, "alice", projects=("site",))
    broken = app_tar({"Dockerfile": f"FROM {base_image}\nRUN echo building-now && exit 3\n"})
    async with running_server(panel) as server, running_worker(panel):
        assert (await run(ssh(server, alice, "upload", "site"), stdin=broken)).status == 0
        deployed = await run(ssh(server, alice, "deploy", "site", "--wait"))
    assert deployed.status == 1
    assert "building-now" in deployed.stderr  # the build log, as it came
    assert "failed" in deployed.stderr
    assert deployed.stdout.strip().isdigit()  # data only: the deployment's number


async def test_exit_codes_and_json_through_openssh(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    carol = await account(panel, tmp_path, "carol", projects=("diary",))
    dave = await account(panel, tmp_path, "dave", projects=("dave-site",))

    async def status(*command: str, stdin: bytes | None = None) -> Result:
        return await run(ssh(ssh_server, carol, *command), stdin=stdin)

    whoami = await status("whoami")
    assert whoami.status == 0 and "carol" in whoami.stdout
    assert "\x1b" not in whoami.stdout + whoami.stderr
    listed = await status("projects", "list", "--json")
    assert [p["name"] for p in json.loads(listed.stdout)] == ["diary"]
    assert (await status("frobnicate")).status == 2
    assert (await status("projects", "info", "nope")).status == 3
    theirs = await status("projects", "info", "dave-site")
    assert (theirs.status, theirs.stderr) == (3, "You have no project named 'dave-site'.\n")
    assert (await status("projects", "delete", "diary")).status == 2  # no --yes
    assert (await status("upload", "diary", stdin=app_zip())).status == 0
    # Flags smuggled into the command string are words, never shell.
    injected = await status("status diary; projects delete diary --yes")
    assert injected.status == 2
    assert [p.name for p in await panel.projects.list(acting(carol.id))] == ["diary"]
    assert await panel.projects.list(acting(dave.id)) != []

    stranger = visitor(tmp_path, "nobody")
    refused = await run(ssh(ssh_server, stranger, "whoami"))
    assert refused.status == 4
    assert "ssh -t" in refused.stderr


async def test_a_client_that_leaves_mid_upload_leaves_nothing(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    erin = await account(panel, tmp_path, "erin", projects=("diary",))
    process = await asyncio.create_subprocess_exec(
        *ssh(ssh_server, erin, "upload", "diary"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdin is not None
    try:
        process.stdin.write(b"PK\x03\x04" + b"\0" * (512 * 1024))
        await process.stdin.drain()

        async def under_way() -> bool:
            return await panel.storage.pending_uploads() != []

        await eventually(under_way, "the upload to be under way", within=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    async def dropped() -> bool:
        return await panel.storage.pending_uploads() == []

    await eventually(dropped, "the unfinished upload to be dropped")
    assert await panel.archives.list(acting(erin.id), "diary") == []


def talking_app(base_image: str, page: str) -> dict[str, str]:
    """`page_app` that says hello on its stdout first (for `logs`)."""
    files = page_app(base_image, page)
    files["Dockerfile"] = files["Dockerfile"].replace(
        'CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]',
        'CMD ["sh", "-c", "echo app-says-hello; exec httpd -f -p 8000 -h /www"]',
    )
    return files


async def test_history_logs_rollback_stop_start_restart_through_openssh(
    deploy_panel: Panel, nginx_router: NginxRouter, base_image: str, tmp_path: Path
) -> None:
    panel = deploy_panel
    alice = await account(panel, tmp_path, "alice", projects=("site",))
    async with running_server(panel) as server, running_worker(panel):

        async def ok(*command: str, stdin: bytes | None = None) -> Result:
            result = await run(ssh(server, alice, *command), stdin=stdin)
            assert result.status == 0, (command, result.stderr)
            return result

        for page in ("one", "two"):
            await ok("upload", "site", stdin=app_tar(talking_app(base_image, page)))
            await ok("deploy", "site", "--wait")
        history = json.loads((await ok("deployments", "site", "--json")).stdout)
        assert [(d["version"], d["state"]) for d in history] == [
            ("v2-app.tar", "running"),
            ("v1-app.tar", "superseded"),
        ]
        assert (await http_request(nginx_router, "site")).text.strip() == "two"

        app_log = await ok("logs", "site")  # without -f: the recent lines, then it ends
        assert "app-says-hello" in app_log.stdout
        recent = await ok("logs", "site", "--since", "1h")
        assert "app-says-hello" in recent.stdout
        later = await ok("logs", "site", "--since", "2099-01-01T00:00:00Z")
        assert later.stdout == ""
        build = await ok("logs", "site", "--build", str(history[0]["id"]), "--json")
        lines = [json.loads(line)["line"] for line in build.stdout.splitlines()]
        assert any("index.html" in line for line in lines)

        rolled = await ok("rollback", "site", "--wait", "--json")
        assert json.loads(rolled.stdout)["reason"] == "rollback"
        assert (await http_request(nginx_router, "site")).text.strip() == "one"

        await ok("stop", "site")
        assert json.loads((await ok("status", "site", "--json")).stdout)["state"] == "stopped"
        assert (await http_request(nginx_router, "site")).status == 503
        await ok("start", "site")
        await ok("restart", "site", "--wait")
        assert (await http_request(nginx_router, "site")).text.strip() == "one"
        assert (await run(ssh(server, alice, "cancel", "site"))).status == 3  # nothing queued

        # `logs -f --json`: one object per line, until the client leaves; then nothing is left
        # running for it on the server (no command task, no Docker log stream).
        process = await asyncio.create_subprocess_exec(
            *ssh(server, alice, "logs", "site", "-f", "--json"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), 30)
            assert json.loads(first) == {"line": "app-says-hello"}
        finally:
            process.kill()
            await process.wait()

        async def all_ended() -> bool:
            commands = [t for t in server._tasks if t.get_name() == "ssh-command"]
            return not commands and not panel.engine._pumps

        await eventually(all_ended, "the command and its log stream to end")


@pytest.mark.parametrize("how", ["ctrl-c on a pty", "SIGINT"])
async def test_ctrl_c_ends_a_waiting_deploy_with_130_and_cancel_then_withdraws_it(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path, how: str
) -> None:
    frank = await account(panel, tmp_path, "frank", projects=("diary",))
    upload = await panel.archives.begin_upload(acting(frank.id), "diary", "app.zip")
    await upload.write(app_zip())
    await upload.finish()
    async with asyncssh.connect(
        "127.0.0.1",
        ssh_server.port,
        username="frank",
        client_keys=[frank.key],
        known_hosts=None,
        agent_path=None,
    ) as conn:
        pty = how == "ctrl-c on a pty"
        process = await conn.create_process(
            "deploy diary --wait", term_type="xterm" if pty else None
        )
        # No worker runs: the deployment stays queued and the command waits for it.
        said = await asyncio.wait_for(process.stderr.readline(), 10)
        assert "queued" in said
        if pty:
            process.stdin.write("\x03")
        else:
            process.send_signal("INT")
        result = await asyncio.wait_for(process.wait(), 10)
        assert result.exit_status == 130
        cancelled = await conn.run("cancel diary --json")
    assert cancelled.exit_status == 0, cancelled.stderr
    assert json.loads(str(cancelled.stdout))["state"] == "cancelled"


async def test_a_command_running_when_the_server_stops_exits_75(
    panel: Panel, tmp_path: Path
) -> None:
    gina = await account(panel, tmp_path, "gina", projects=("diary",))
    upload = await panel.archives.begin_upload(acting(gina.id), "diary", "app.zip")
    await upload.write(app_zip())
    await upload.finish()
    async with running_server(panel) as server:
        process = await asyncio.create_subprocess_exec(
            *ssh(server, gina, "deploy", "diary", "--wait"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        said = await asyncio.wait_for(process.stderr.readline(), 20)
        assert b"queued" in said  # no worker: it waits
        await server.close(grace=0)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 75
    assert "try again" in err.decode()


async def run_with_token(
    server: GhstServer,
    tmp_path: Path,
    user: str,
    secret: str,
    *command: str,
    stdin: bytes | None = None,
) -> Result:
    """OpenSSH with the token as the password (SSH_ASKPASS), no key: how a CI job logs in."""
    from tests.security.test_token_logins import askpass_env, token_options

    argv = ["/usr/bin/ssh", *token_options(server), f"{user}@127.0.0.1", "--", *command]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=askpass_env(tmp_path / "askpass", secret),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def test_ci_with_a_deploy_token_and_no_key(
    deploy_panel: Panel, nginx_router: NginxRouter, base_image: str, tmp_path: Path
) -> None:
    """The person makes a token for one project over ssh; CI, with only that token, uploads
    and deploys and the site answers; the token cannot touch the account's other project;
    once revoked it no longer logs in; the audit log shows who did what."""
    panel = deploy_panel
    alice = await account(panel, tmp_path, "alice", projects=("site", "other"))
    archive = app_tar(page_app(base_image, "deployed by a token"))
    async with running_server(panel) as server, running_worker(panel):
        made = await run(
            ssh(
                server,
                alice,
                "tokens",
                "create",
                "ci",
                "--scope",
                "deploy,read",
                "--project",
                "site",
            )
        )
        assert made.status == 0, made.stderr
        secret = made.stdout.strip()
        uploaded = await run_with_token(server, tmp_path, "alice", secret, "upload", "site",
                                        stdin=archive)  # fmt: skip
        assert uploaded.status == 0, uploaded.stderr
        deployed = await run_with_token(
            server, tmp_path, "alice", secret, "deploy", "site", "--wait"
        )
        assert deployed.status == 0, deployed.stderr
        other = await run_with_token(server, tmp_path, "alice", secret, "upload", "other",
                                     stdin=archive)  # fmt: skip
        assert other.status == 4 and other.stdout == "", other.output
        revoked = await run(ssh(server, alice, "tokens", "revoke", "ci", "--yes"))
        assert revoked.status == 0, revoked.stderr
        after = await run_with_token(server, tmp_path, "alice", secret, "whoami")
        assert after.status == 255  # refused at login
        log = await run(ssh(server, alice, "audit", "--json"))
    answer = await http_request(nginx_router, "site")
    assert (answer.status, answer.text.strip()) == (200, "deployed by a token")
    entries = json.loads(log.stdout)
    seen = [(e["action"], e["outcome"], e["actor"]["kind"], e["origin"]) for e in entries]
    assert ("token.create", "ok", "user", "command") in seen
    assert ("archive.upload", "ok", "token", "command") in seen, seen
    assert ("command.upload", "refused", "token", "command") in seen, seen  # `other`
    assert ("deployment.deploy", "ok", "token", "command") in seen, seen
    assert ("token.revoke", "ok", "user", "command") in seen
    assert secret not in log.stdout


async def test_projects_env_keys_billing_and_a_deploy_key_through_openssh(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    """The rest of the commands as a script runs them: a project with a plan, env vars (values
    hidden unless asked), keys from stdin, a deploy key that logs in limited to its project,
    and billing's read-only views."""
    from tests.e2e.helpers import new_key, public_line, write_private_key

    erin = await account(panel, tmp_path, "erin")

    async def ok(*command: str, stdin: bytes | None = None) -> Result:
        result = await run(ssh(ssh_server, erin, *command), stdin=stdin)
        assert result.status == 0, (command, result.output)
        return result

    plans = json.loads((await ok("billing", "plans", "--json")).stdout)
    assert "free" in [plan["code"] for plan in plans]
    assert (await ok("projects", "create", "notes", "--plan", "free")).stdout == "notes\n"
    refused = await run(ssh(ssh_server, erin, "projects", "create", "other"))
    assert refused.status == 1 and "one free project" in refused.stderr  # the default is free
    assert "`billing plans`" in refused.stderr  # the way to the paid plans, from where erin is
    await ok("projects", "create", "other", "--plan", "host-0")
    info = json.loads((await ok("projects", "info", "notes", "--json")).stdout)
    assert info["name"] == "notes"

    await ok("env", "notes", "set", "API_KEY=hunter22", "MODE=prod")
    hidden = await ok("env", "notes")
    assert "API_KEY" in hidden.stdout and "hunter22" not in hidden.stdout
    assert "hunter22" in (await ok("env", "notes", "list", "--reveal")).stdout
    assert (await run(ssh(ssh_server, erin, "env", "notes", "unset", "MODE"))).status == 2
    await ok("env", "notes", "unset", "MODE", "--yes")
    assert "MODE" not in (await ok("env", "notes", "--json")).stdout

    laptop = new_key()
    await ok("keys", "add", "--name", "laptop", stdin=public_line(laptop).encode())
    ci_key = new_key()
    await ok(
        "keys", "add", "--name", "ci", "--project", "notes", stdin=public_line(ci_key).encode()
    )
    keys = {k["name"]: k for k in json.loads((await ok("keys", "list", "--json")).stdout)}
    assert keys["ci"]["projects"] == ["notes"] and keys["ci"]["scopes"] == ["deploy"]
    assert "scopes" not in keys["laptop"]

    # The deploy key logs in, limited to `notes` and to deploying.
    deploy_key = Account(erin.user, "erin", ci_key, write_private_key(ci_key, tmp_path / "ci.key"))
    assert (await run(ssh(ssh_server, deploy_key, "upload", "notes"), stdin=app_zip())).status == 0
    assert (await run(ssh(ssh_server, deploy_key, "upload", "other"), stdin=app_zip())).status == 4
    assert (await run(ssh(ssh_server, deploy_key, "env", "notes", "list", "--reveal"))).status == 4
    assert (await run(ssh(ssh_server, deploy_key, "keys", "list"))).status == 4

    await ok("keys", "rm", "laptop", "--yes")
    assert "laptop" not in (await ok("keys", "list")).stdout
    balance = json.loads((await ok("billing", "balance", "--json")).stdout)
    assert "balance" in balance
    assert json.loads((await ok("billing", "invoices", "--json")).stdout) == []
    await ok("projects", "delete", "other", "--yes")
    assert [p["name"] for p in json.loads((await ok("projects", "list", "--json")).stdout)] == [
        "notes"
    ]
