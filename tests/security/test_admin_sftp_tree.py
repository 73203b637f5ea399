"""SFTP is the account's own tree, whoever logs in: an admin (with a key, or with a token that
holds `admin`) sees and touches only their own projects, never another tenant's and no admin
path; a user's token granted `admin` gets no further than its owner. Through OpenSSH's sftp."""

from __future__ import annotations

from pathlib import Path

from core.panel import Panel
from sshd.server import GhstServer
from tests.actors import SYSTEM, acting
from tests.e2e.transfers import Result, account, app_zip, sftp_batch, versions
from tests.integration.test_actor_rights import upload
from tests.security.test_token_logins import new_token, sftp

# What an admin might hope to reach: another tenant's project, its version, and admin-looking
# paths beside the account's own projects.
REACHES = [
    "ls /shop",
    "get /shop/v1-app.zip stolen.zip",
    "put app.zip /shop/",
    "rm /shop/v1-app.zip",
    "ls /admin",
    "ls /users",
    "ls /bob",
    "ls /shop/../bob",
    "get /billing/../shop/v1-app.zip stolen.zip",
    "mkdir /admin",
]


def listed(result: Result) -> list[str]:
    """The names `ls /` printed (sftp's batch echoes the command first)."""
    assert result.status == 0, result.output
    names = result.stdout.split("sftp> ls", 1)[1].split()
    return sorted(name.strip("/").rsplit("/", 1)[-1] for name in names if name.strip("/."))


async def test_an_admins_sftp_is_their_own_tree_only(
    ssh_server: GhstServer, panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice", projects=("notes",))
    bob = await account(panel, tmp_path, "bob", projects=("shop",))
    await panel.accounts.set_role(SYSTEM, "alice", "admin")
    await upload(panel, acting(bob.id), "shop")
    (tmp_path / "app.zip").write_bytes(app_zip())
    admin_token = await new_token(panel, alice, "read,deploy,admin", name="ops")
    bobs_token = await new_token(panel, bob, "read,deploy,admin", name="sneaky")

    by_key = await sftp_batch(ssh_server, alice, "ls /", tmp_path)
    assert listed(by_key) == ["notes"]
    by_token = await sftp(ssh_server, tmp_path, "alice", admin_token.secret, "ls /\n")
    assert listed(by_token) == ["notes"]  # no other tenant, no invoices: a token's tree
    by_bobs_token = await sftp(ssh_server, tmp_path, "bob", bobs_token.secret, "ls /\n")
    assert listed(by_bobs_token) == ["shop"]

    for reach in REACHES:
        key = await sftp_batch(ssh_server, alice, reach, tmp_path)
        token = await sftp(ssh_server, tmp_path, "alice", admin_token.secret, reach + "\n")
        assert key.status != 0 and token.status != 0, (reach, key.output, token.output)
    for reach in ("ls /notes", "ls /admin", "get /notes/../../etc/passwd stolen.zip"):
        theirs = await sftp(ssh_server, tmp_path, "bob", bobs_token.secret, reach + "\n")
        assert theirs.status != 0, (reach, theirs.output)
    assert not (tmp_path / "stolen.zip").exists()
    assert [v.name for v in await versions(panel, bob, "shop")] == ["v1-app.zip"]
    assert [p.name for p in await panel.projects.list(acting(alice.id))] == ["notes"]
    assert [p.name for p in await panel.projects.list(acting(bob.id))] == ["shop"]
    # Her own tree still works for her token: an upload into her project.
    mine = await sftp(ssh_server, tmp_path, "alice", admin_token.secret, "put app.zip /notes/\n")
    assert mine.status == 0, mine.output
    assert [v.name for v in await versions(panel, alice, "notes")] == ["v1-app.zip"]
