"""Projects against real PostgreSQL and Redis: rules, ownership, and a cache that is never stale."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.errors import ConflictError, NotFoundError, ValidationError
from core.panel import Panel
from core.projects.cache import JsonCache
from core.projects.service import parse_app_port
from core.settings import Settings
from tests.actors import acting
from tests.conftest import reset_state

PASSWORD = "correct horse battery"


async def two_users(panel: Panel) -> tuple[int, int]:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    return alice.id, bob.id


async def test_create_list_get_delete(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    created = await panel.projects.create(acting(alice), "my-app")
    assert (created.name, created.user_id, created.versions) == ("my-app", alice, 0)
    await panel.projects.create(acting(alice), "blog2")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["blog2", "my-app"]
    assert (await panel.projects.get(acting(alice), "my-app")).id == created.id
    with pytest.raises(ValidationError, match="Type the project's name, 'my-app', to confirm"):
        await panel.projects.delete(acting(alice), "my-app", "my-ap")
    await panel.projects.delete(acting(alice), "my-app", "my-app")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["blog2"]
    with pytest.raises(NotFoundError):
        await panel.projects.get(acting(alice), "my-app")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "3 to 40 characters"),
        ("a" * 41, "3 to 40 characters"),
        ("My-App", "lowercase letters"),
        ("1app", "starts with a letter"),
        ("app-", "does not end with a hyphen"),
        ("my_app", "lowercase letters, digits and hyphens"),
        ("my.app", "lowercase letters, digits and hyphens"),
        ("xn--app", "two hyphens"),
        ("www", "'www' is reserved"),
        ("admin", "'admin' is reserved"),
        ("panel", "'panel' is reserved"),
    ],
)
async def test_names_are_dns_labels(panel: Panel, name: str, message: str) -> None:
    alice, _ = await two_users(panel)
    with pytest.raises(ValidationError, match=message):
        await panel.projects.create(acting(alice), name)
    assert await panel.projects.list(acting(alice)) == []


async def test_names_are_unique_across_users(panel: Panel) -> None:
    alice, bob = await two_users(panel)
    await panel.projects.create(acting(alice), "shop")
    with pytest.raises(ConflictError, match="'shop' is taken"):
        await panel.projects.create(acting(bob), "shop")


async def test_another_users_project_is_not_found_like_a_missing_one(panel: Panel) -> None:
    alice, bob = await two_users(panel)
    await panel.projects.create(acting(alice), "shop")
    with pytest.raises(NotFoundError) as theirs:
        await panel.projects.get(acting(bob), "shop")
    with pytest.raises(NotFoundError) as missing:
        await panel.projects.get(acting(bob), "nothing")
    assert theirs.value.message.replace("shop", "X") == missing.value.message.replace(
        "nothing", "X"
    )
    with pytest.raises(NotFoundError):
        await panel.projects.delete(acting(bob), "shop", "shop")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["shop"]
    assert await panel.projects.list(acting(bob)) == []


async def test_lists_are_served_from_redis_and_every_write_is_seen_at_once(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "first")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["first"]
    # A row written behind the service's back is not seen: the list came from Redis...
    async with panel.pool.acquire() as conn:
        await conn.execute("INSERT INTO projects (user_id, name) VALUES ($1, 'sneaky')", alice)
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["first"]
    # ...and a write through the service is seen immediately, with no stale list.
    await panel.projects.create(acting(alice), "second")
    assert [p.name for p in await panel.projects.list(acting(alice))] == [
        "first",
        "second",
        "sneaky",
    ]
    await panel.projects.delete(acting(alice), "first", "first")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["second", "sneaky"]


async def test_a_reader_racing_a_write_cannot_leave_a_stale_entry(panel: Panel) -> None:
    cache = JsonCache(panel.redis, "race-test")
    loading = asyncio.Event()
    release = asyncio.Event()

    async def slow_old_load() -> list[str]:
        loading.set()
        await release.wait()
        return ["old"]  # what PostgreSQL said before the write

    reader = asyncio.create_task(cache.get_or_load("alice", "list", slow_old_load))
    await loading.wait()
    await cache.invalidate("alice")  # the write commits while the reader is loading
    release.set()
    assert await reader == ["old"]

    async def fresh_load() -> list[str]:
        return ["new"]

    assert await cache.get_or_load("alice", "list", fresh_load) == ["new"]


@pytest.fixture
async def panel_without_redis(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    opened = await Panel.open(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"))
    yield opened
    await opened.close()


async def test_the_panel_works_from_postgresql_when_redis_is_down(
    panel_without_redis: Panel,
) -> None:
    panel = panel_without_redis
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "still-works")
    assert [p.name for p in await panel.projects.list(acting(alice))] == ["still-works"]
    assert (await panel.projects.get(acting(alice), "still-works")).name == "still-works"
    await panel.projects.delete(acting(alice), "still-works", "still-works")
    assert await panel.projects.list(acting(alice)) == []


async def test_cache_keys_are_really_in_redis(panel: Panel, settings: Settings) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "cached")
    await panel.projects.list(acting(alice))
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = {key.decode() async for key in redis.scan_iter(f"ghst:projects:{alice}:*")}
    finally:
        await redis.aclose()
    assert any(key.endswith(":list") for key in keys)


async def test_app_port_is_set_and_cleared(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    created = await panel.projects.create(acting(alice), "backend")
    assert created.app_port is None  # automatic until set
    updated = await panel.projects.set_app_port(acting(alice), "backend", 8000)
    assert (updated.name, updated.app_port) == ("backend", 8000)
    assert (await panel.projects.get(acting(alice), "backend")).app_port == 8000
    assert [p.app_port for p in await panel.projects.list(acting(alice))] == [8000]
    cleared = await panel.projects.set_app_port(acting(alice), "backend", None)
    assert cleared.app_port is None
    assert (await panel.projects.get(acting(alice), "backend")).app_port is None
    for port in (1, 65535):
        assert (await panel.projects.set_app_port(acting(alice), "backend", port)).app_port == port
    async with panel.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT app_port FROM projects WHERE name = 'backend'")
    assert stored == 65535  # what the deployer reads


@pytest.mark.parametrize("port", [0, -1, 65536, 100000, True])
async def test_app_port_out_of_range_is_refused(panel: Panel, port: int) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "backend")
    await panel.projects.set_app_port(acting(alice), "backend", 3000)
    with pytest.raises(ValidationError, match="a whole number from 1 to 65535, or empty"):
        await panel.projects.set_app_port(acting(alice), "backend", port)
    assert (await panel.projects.get(acting(alice), "backend")).app_port == 3000


@pytest.mark.parametrize(
    ("text", "port"), [("", None), ("  ", None), ("8000", 8000), (" 80 ", 80), ("65535", 65535)]
)
def test_a_typed_app_port_is_parsed(text: str, port: int | None) -> None:
    assert parse_app_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "80a", "-1", "8.0", "١٢٣", "auto"])
def test_a_typed_app_port_that_is_not_a_port_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="a whole number from 1 to 65535"):
        parse_app_port(text)


async def test_another_users_project_port_cannot_be_set(panel: Panel) -> None:
    alice, bob = await two_users(panel)
    await panel.projects.create(acting(alice), "backend")
    await panel.projects.set_app_port(acting(alice), "backend", 8000)
    with pytest.raises(NotFoundError, match="You have no project named 'backend'"):
        await panel.projects.set_app_port(acting(bob), "backend", 9000)
    with pytest.raises(NotFoundError):
        await panel.projects.set_app_port(acting(bob), "nothing", 9000)
    assert (await panel.projects.get(acting(alice), "backend")).app_port == 8000


async def test_a_new_app_port_is_seen_at_once_through_the_cache(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "backend")
    # Both cached entries are loaded (and so served from Redis from now on)...
    assert (await panel.projects.get(acting(alice), "backend")).app_port is None
    assert [p.app_port for p in await panel.projects.list(acting(alice))] == [None]
    await panel.projects.set_app_port(acting(alice), "backend", 5000)
    # ...and neither is stale after the write.
    assert (await panel.projects.get(acting(alice), "backend")).app_port == 5000
    assert [p.app_port for p in await panel.projects.list(acting(alice))] == [5000]


async def test_a_project_cached_before_app_port_existed_reads_as_automatic(
    panel: Panel, settings: Settings
) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(acting(alice), "backend")
    await panel.projects.get(acting(alice), "backend")
    redis = Redis.from_url(settings.redis_url)
    try:
        [key] = [k async for k in redis.scan_iter(f"ghst:projects:{alice}:*project:backend")]
        entry = json.loads(await redis.get(key))
        del entry["app_port"]  # as written by the panel before this setting
        await redis.set(key, json.dumps(entry))
    finally:
        await redis.aclose()
    project = await panel.projects.get(acting(alice), "backend")
    assert (project.name, project.app_port) == ("backend", None)
