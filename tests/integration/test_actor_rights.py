"""Rights checked against the actor, with the real services: another tenant's rows are not
found (never "forbidden", which would tell they exist), a read-only token cannot write, keys,
password and sessions stay out of any token's reach, and the system acts on any account's rows
when the call names the account."""

from __future__ import annotations

import io
import zipfile

import pytest

from core.actor import Actor
from core.errors import NotFoundError, PermissionDenied
from core.identity.accounts import User
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.tui.fakes import key_line

PASSWORD = "correct horse battery"


def app_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Dockerfile", "FROM scratch\n")
    return buffer.getvalue()


async def upload(panel: Panel, actor: Actor, project: str) -> None:
    transfer = await panel.archives.begin_upload(actor, project, "app.zip")
    await transfer.write(app_zip())
    await transfer.finish()


async def tenants(panel: Panel) -> tuple[User, User]:
    """alice with a project "shop" (one version, one variable, one key) and bob."""
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    await panel.projects.create(acting(alice), "shop")
    await panel.env.set(acting(alice), "shop", "SECRET", "alice's secret")
    await upload(panel, acting(alice), "shop")
    await panel.keys.add(acting(alice), key_line("laptop"))
    return alice, bob


def read_only_token(user: User, projects: frozenset[str] | None = None) -> Actor:
    return Actor.for_token(
        user, token_id=1, prefix="gh_ro", scopes=frozenset({"read"}), projects=projects
    )


async def test_another_tenant_is_refused_by_every_service(panel: Panel) -> None:
    alice, bob_user = await tenants(panel)
    bob = acting(bob_user)
    missing = "You have no project named 'shop'."
    with pytest.raises(NotFoundError, match=missing):
        await panel.projects.get(bob, "shop")
    with pytest.raises(NotFoundError, match=missing):
        await panel.projects.set_app_port(bob, "shop", 3000)
    with pytest.raises(NotFoundError, match=missing):
        await panel.projects.delete(bob, "shop", "shop")
    with pytest.raises(NotFoundError, match="No such account"):
        await panel.projects.list(bob, owner_id=alice.id)
    with pytest.raises(NotFoundError, match="No such account"):
        await panel.projects.create(bob, "bobs-gift", owner_id=alice.id)
    with pytest.raises(NotFoundError, match=missing):
        await panel.env.list(bob, "shop")
    with pytest.raises(NotFoundError, match=missing):
        await panel.env.set(bob, "shop", "SECRET", "bob's")
    with pytest.raises(NotFoundError, match=missing):
        await panel.env.unset(bob, "shop", "SECRET")
    with pytest.raises(NotFoundError, match=missing):
        await panel.archives.list(bob, "shop")
    with pytest.raises(NotFoundError, match=missing):
        await panel.archives.find(bob, "shop", "v1")
    with pytest.raises(NotFoundError, match=missing):
        await panel.archives.delete(bob, "shop", "v1")
    with pytest.raises(NotFoundError, match=missing):
        await panel.archives.begin_upload(bob, "shop", "app.zip")
    with pytest.raises(NotFoundError, match=missing):
        await panel.archives.delete_project(bob, "shop", "shop")
    with pytest.raises(NotFoundError, match="No such account"):
        await panel.archives.usage(bob, owner_id=alice.id)
    alices_key = (await panel.keys.list(acting(alice)))[0]
    with pytest.raises(NotFoundError, match="No such account"):
        await panel.keys.list(bob, owner_id=alice.id)
    with pytest.raises(NotFoundError, match="No such key"):
        await panel.keys.remove(bob, alices_key.id)
    with pytest.raises(NotFoundError, match="No such account"):
        await panel.sessions.revoke_all(bob, owner_id=alice.id)
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    await panel.sessions.revoke(bob, session.jti)  # not bob's: nothing happens
    assert await panel.sessions.ended([session.jti]) == set()
    # Everything of alice's is as it was.
    assert [var.value for var in await panel.env.list(acting(alice), "shop")] == ["alice's secret"]
    assert [a.name for a in await panel.archives.list(acting(alice), "shop")] == ["v1-app.zip"]
    assert await panel.keys.count(acting(alice)) == 1
    assert (await panel.projects.get(acting(alice), "shop")).app_port is None


async def test_a_read_only_token_reads_but_cannot_write(panel: Panel) -> None:
    alice, _ = await tenants(panel)
    token = read_only_token(alice)
    assert [project.name for project in await panel.projects.list(token)] == ["shop"]
    assert (await panel.projects.get(token, "shop")).versions == 1
    assert [var.name for var in await panel.env.list(token, "shop")] == ["SECRET"]
    assert (await panel.archives.find(token, "shop", "v1")).version == 1
    used, _quota = await panel.archives.usage(token)
    assert used > 0
    needs_deploy = "needs the 'deploy' scope, which token gh_ro of alice lacks"
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.projects.create(token, "another")
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.projects.set_app_port(token, "shop", 3000)
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.projects.delete(token, "shop", "shop")
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.archives.begin_upload(token, "shop", "app.zip")
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.archives.delete(token, "shop", "v1")
    with pytest.raises(PermissionDenied, match=needs_deploy):
        await panel.archives.delete_project(token, "shop", "shop")
    with pytest.raises(PermissionDenied, match="'env:write' scope"):
        await panel.env.set(token, "shop", "SECRET", "changed")
    with pytest.raises(PermissionDenied, match="'env:write' scope"):
        await panel.env.unset(token, "shop", "SECRET")
    # Nothing changed.
    assert [project.name for project in await panel.projects.list(acting(alice))] == ["shop"]
    assert [var.value for var in await panel.env.list(acting(alice), "shop")] == ["alice's secret"]
    assert len(await panel.archives.list(acting(alice), "shop")) == 1


async def test_no_token_touches_keys_password_or_sessions(panel: Panel) -> None:
    alice, _ = await tenants(panel)
    token = Actor.for_token(
        alice, token_id=2, prefix="gh_all", scopes=frozenset({"read", "deploy", "env:write"})
    )
    with pytest.raises(PermissionDenied, match="A token cannot add SSH keys"):
        await panel.keys.add(token, key_line("desktop"))
    with pytest.raises(PermissionDenied, match="A token cannot list SSH keys"):
        await panel.keys.list(token)
    alices_key = (await panel.keys.list(acting(alice)))[0]
    with pytest.raises(PermissionDenied, match="A token cannot remove SSH keys"):
        await panel.keys.remove(token, alices_key.id)
    with pytest.raises(PermissionDenied, match="A token cannot change the account's password"):
        await panel.accounts.change_password(token, PASSWORD, "a brand new secret", "10.0.0.1")
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    with pytest.raises(PermissionDenied, match="A token cannot end"):
        await panel.sessions.revoke_all(token)
    with pytest.raises(PermissionDenied, match="A token cannot end"):
        await panel.sessions.revoke(token, session.jti)
    assert await panel.sessions.ended([session.jti]) == set()
    assert await panel.keys.count(acting(alice)) == 1
    assert await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1") == alice


async def test_a_token_limited_to_projects_sees_only_those(panel: Panel) -> None:
    alice, _ = await tenants(panel)
    await panel.projects.create(acting(alice), "journal")
    token = read_only_token(alice, projects=frozenset({"journal"}))
    assert [project.name for project in await panel.projects.list(token)] == ["journal"]
    with pytest.raises(PermissionDenied, match="not allowed to act on project 'shop'"):
        await panel.env.list(token, "shop")


async def test_the_system_acts_on_the_account_a_call_names(panel: Panel) -> None:
    alice, _ = await tenants(panel)
    created = await panel.projects.create(SYSTEM, "made-for-alice", owner_id=alice.id)
    assert created.user_id == alice.id
    assert [project.name for project in await panel.projects.list(SYSTEM, owner_id=alice.id)] == [
        "made-for-alice",
        "shop",
    ]
    assert (await panel.projects.get(SYSTEM, "shop")).user_id == alice.id
    await panel.env.set(SYSTEM, "shop", "SECRET", "rotated")
    assert [var.value for var in await panel.env.list(acting(alice), "shop")] == ["rotated"]
    await upload(panel, SYSTEM, "shop")
    assert [a.version for a in await panel.archives.list(acting(alice), "shop")] == [2, 1]
    await panel.archives.delete(SYSTEM, "shop", "v1")
    assert [key.name for key in await panel.keys.list(SYSTEM, owner_id=alice.id)] == [
        "alice@laptop"
    ]
    session = await panel.sessions.open(alice.id, "password", "10.0.0.1")
    assert await panel.sessions.revoke_all(SYSTEM, owner_id=alice.id) == 1
    assert await panel.sessions.ended([session.jti]) == {session.jti}
    await panel.projects.delete(SYSTEM, "made-for-alice", "made-for-alice")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["shop"]
    # The system has no account of its own: a call that names none is refused.
    with pytest.raises(PermissionDenied, match="acts on no account of its own"):
        await panel.projects.create(SYSTEM, "nobodys")


async def test_only_operators_manage_accounts(panel: Panel) -> None:
    alice, _ = await tenants(panel)
    with pytest.raises(PermissionDenied, match="needs an administrator"):
        await panel.accounts.block(acting(alice), "bob")
    with pytest.raises(PermissionDenied, match="needs an administrator"):
        await panel.accounts.list(acting(alice))
    assert not (await panel.accounts.get(alice.id)).is_blocked
    admin = Actor.for_admin(await panel.accounts.set_admin(SYSTEM, "alice", True))
    assert (await panel.accounts.block(admin, "bob")).is_blocked
    assert [user.username for user in await panel.accounts.list(admin)] == ["alice", "bob"]
