"""Events through a real PostgreSQL: what one connection or process writes reaches the
subscribers of every process's hub, only the owner's, and the hub survives a restart."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.actor import Actor
from core.archives.checks import ArchiveRejected
from core.events import CHANNEL, REFRESH, Event, EventHub, Subscription
from core.identity.accounts import User
from core.panel import Panel
from core.projects.service import Project
from tests.actors import as_user
from tests.services import PostgresServer

PASSWORD = "correct horse battery"
WAIT = 10.0  # generous: an event normally arrives within milliseconds


async def next_event(subscription: Subscription) -> Event:
    return await asyncio.wait_for(subscription.get(), WAIT)


async def caught_up(hub: EventHub, panel: Panel) -> None:
    """Everything committed so far has reached `hub`: a marker sent now has arrived (one
    connection hears notifications in commit order)."""
    with hub.subscribe(Actor.system("test"), kinds=["env"]) as watcher:
        payload = json.dumps({"k": "env", "p": -1, "u": -1, "d": None})
        async with panel.pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        while (await next_event(watcher)).project_id != -1:
            pass


async def no_event(subscription: Subscription, hub: EventHub, panel: Panel) -> None:
    await caught_up(hub, panel)
    assert subscription.drain() == []


def app_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Dockerfile", "FROM scratch\n")
        archive.writestr("index.html", "hi")
    return buffer.getvalue()


async def new_user(panel: Panel, name: str) -> User:
    return await panel.accounts.sign_up(name, f"{name}@example.com", PASSWORD)


async def insert_deployment(conn: asyncpg.Connection, project: Project) -> int:
    deployment_id: int = await conn.fetchval(
        "INSERT INTO deployments (project_id, project_name, user_id, archive_name)"
        " VALUES ($1, $2, $3, 'v1-app.zip') RETURNING id",
        project.id,
        project.name,
        project.user_id,
    )
    return deployment_id


@pytest.fixture
async def hub(panel: Panel) -> AsyncIterator[EventHub]:
    """A second process's hub: its own LISTEN connection to the same database."""
    other = EventHub(panel.settings.database_url)
    await other.start()
    yield other
    await other.close()


async def test_a_state_change_written_by_another_connection_reaches_the_subscriber(
    panel: Panel, hub: EventHub
) -> None:
    alice = await new_user(panel, "alice")
    project = await panel.projects.create(as_user(alice.id), "shop")
    await caught_up(hub, panel)
    with hub.subscribe(Actor.for_user(alice), project_id=project.id) as events:
        conn = await asyncpg.connect(panel.settings.database_url)
        try:
            deployment_id = await insert_deployment(conn, project)
            queued = await next_event(events)
            async with conn.transaction():
                await conn.execute(
                    "UPDATE deployments SET state = 'building', started_at = now() WHERE id = $1",
                    deployment_id,
                )
                await asyncio.sleep(0.2)
                assert events.drain() == []  # not before the commit
            building = await next_event(events)
        finally:
            await conn.close()
    expected = Event("deployment", project.id, alice.id, deployment_id)
    assert queued == building == expected


async def test_a_change_made_by_another_process_reaches_every_hub(
    panel: Panel, hub: EventHub
) -> None:
    alice = await new_user(panel, "alice")
    project = await panel.projects.create(as_user(alice.id), "shop")
    await panel.events.start()
    here = panel.events.subscribe(Actor.for_user(alice), kinds=["deployment"])
    there = hub.subscribe(Actor.for_user(alice), kinds=["deployment"])
    script = (
        "import asyncio, asyncpg, sys\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(sys.argv[1])\n"
        "    await conn.execute(\"UPDATE deployments SET state = 'failed' WHERE id = $1\","
        " int(sys.argv[2]))\n"
        "asyncio.run(main())\n"
    )
    async with panel.pool.acquire() as conn:
        deployment_id = await insert_deployment(conn, project)
    for subscription in (here, there):
        assert (await next_event(subscription)).deployment_id == deployment_id
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, panel.settings.database_url, str(deployment_id)],
        check=True,
    )
    for subscription in (here, there):
        event = await next_event(subscription)
        assert event == Event("deployment", project.id, alice.id, deployment_id)
    assert (await panel.deployments.get(as_user(alice.id), "shop", deployment_id)).state == "failed"


async def test_a_tenant_never_receives_another_tenants_events(panel: Panel, hub: EventHub) -> None:
    alice, bob = await new_user(panel, "alice"), await new_user(panel, "bob")
    alices = await panel.projects.create(as_user(alice.id), "alices-shop")
    bobs = await panel.projects.create(as_user(bob.id), "bobs-shop")
    await caught_up(hub, panel)
    # Bob names Alice's project: the filter is on the owner the database reports, not on
    # what the subscriber asked for.
    bob_all = hub.subscribe(Actor.for_user(bob))
    bob_prying = hub.subscribe(Actor.for_user(bob), project_id=alices.id)
    alice_all = hub.subscribe(Actor.for_user(alice))
    operator = hub.subscribe(Actor.system("test"), kinds=["deployment", "project"])

    await panel.env.set(as_user(alice.id), "alices-shop", "SECRET", "hunter2")
    await panel.projects.set_app_port(as_user(alice.id), "alices-shop", 3000)
    async with panel.pool.acquire() as conn:
        deployment_id = await insert_deployment(conn, alices)
    await panel.projects.delete(as_user(alice.id), "alices-shop", "alices-shop")

    # Each change also writes an audit entry (kind 'audit', alice's, no project): 3 of them.
    received = [await next_event(alice_all) for _ in range(7)]
    assert [(e.kind, e.user_id) for e in received if e.kind == "audit"] == [("audit", alice.id)] * 3
    seen = [e for e in received if e.kind != "audit"]
    assert [(e.kind, e.project_id, e.user_id) for e in seen] == [
        ("env", alices.id, alice.id),
        ("project", alices.id, alice.id),
        ("deployment", alices.id, alice.id),
        ("project", alices.id, alice.id),
    ]
    assert seen[2].deployment_id == deployment_id
    await no_event(alice_all, hub, panel)  # nothing for the rows that went with the project
    await no_event(bob_all, hub, panel)
    await no_event(bob_prying, hub, panel)
    assert {(e.kind, e.user_id) for e in operator.drain()} == {
        ("project", alice.id),
        ("deployment", alice.id),
    }

    await panel.projects.set_app_port(as_user(bob.id), "bobs-shop", 3000)
    assert await next_event(bob_all) == Event("project", bobs.id, bob.id)
    assert await next_event(bob_all) == Event("audit", None, bob.id)
    await no_event(alice_all, hub, panel)


async def test_payloads_carry_ids_only_and_a_lease_renewal_publishes_nothing(
    panel: Panel,
) -> None:
    alice = await new_user(panel, "alice")
    project = await panel.projects.create(as_user(alice.id), "shop")
    raw: list[str] = []
    conn = await asyncpg.connect(panel.settings.database_url)
    writer = await asyncpg.connect(panel.settings.database_url)
    try:
        await conn.add_listener(CHANNEL, lambda *args: raw.append(args[3]))
        deployment_id = await insert_deployment(writer, project)
        await writer.execute(
            "UPDATE deployments SET lease_expires_at = now() + interval '30 seconds' WHERE id = $1",
            deployment_id,
        )
        await writer.execute(
            "UPDATE deployments SET log = log || $2 WHERE id = $1", deployment_id, "Step 1\n"
        )
        await writer.execute(
            "UPDATE deployments SET error = 'tenant text' WHERE id = $1", deployment_id
        )
        await writer.execute("UPDATE projects SET app_port = app_port WHERE id = $1", project.id)
        await writer.execute("SELECT pg_notify($1, 'end')", CHANNEL)
        for _ in range(100):
            if raw and raw[-1] == "end":
                break
            await asyncio.sleep(0.05)
    finally:
        await writer.close()
        await conn.close()
    events = [json.loads(payload) for payload in raw[:-1]]
    ids = {"p": project.id, "u": alice.id, "d": deployment_id}
    # Queued, the log grew, the error changed; the lease and the no-op update said nothing.
    assert events == [{"k": "deployment", **ids}, {"k": "log", **ids}, {"k": "deployment", **ids}]
    assert not any("tenant" in payload or "Step" in payload for payload in raw)


async def test_uploads_and_project_changes_reach_the_projects_watchers(panel: Panel) -> None:
    alice = await new_user(panel, "alice")
    with panel.events.subscribe(Actor.for_user(alice), kinds=["project", "archive"]) as events:
        await panel.events.start()
        assert await next_event(events) == REFRESH  # the hub started listening
        project = await panel.projects.create(as_user(alice.id), "shop")
        assert await next_event(events) == Event("project", project.id, alice.id)
        transfer = await panel.archives.begin_upload(as_user(alice.id), "shop", "app.zip")
        await transfer.write(b"not a zip")
        with pytest.raises(ArchiveRejected):
            await transfer.finish()
        assert await next_event(events) == Event("archive", project.id, alice.id)  # refused
        transfer = await panel.archives.begin_upload(as_user(alice.id), "shop", "app.zip")
        await transfer.write(app_zip())
        assert (await transfer.finish()).status == "ready"
        assert await next_event(events) == Event("archive", project.id, alice.id)
        await panel.archives.delete(as_user(alice.id), "shop", "v1-app.zip")
        assert await next_event(events) == Event("archive", project.id, alice.id)


async def test_the_listener_survives_a_restart_and_asks_for_one_refresh(
    fragile_panel: Panel, own_postgres: PostgresServer
) -> None:
    panel = fragile_panel
    alice = await new_user(panel, "alice")
    project = await panel.projects.create(as_user(alice.id), "shop")
    events = panel.events.subscribe(Actor.for_user(alice), kinds=["deployment"])
    await panel.events.start()
    assert await next_event(events) == REFRESH
    assert panel.events.connections == 1

    await asyncio.to_thread(own_postgres.stop, "fast")  # a restart: clients cut off
    await asyncio.to_thread(own_postgres.resume)
    # Events may have been missed meanwhile: every subscriber is told to load again, once.
    assert await next_event(events) == REFRESH
    assert panel.events.connections == 2
    async with panel.pool.acquire() as conn:
        deployment_id = await insert_deployment(conn, project)
    assert await next_event(events) == Event("deployment", project.id, alice.id, deployment_id)
    assert events.drain() == []
