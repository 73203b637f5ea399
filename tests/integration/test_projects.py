"""Projects against real PostgreSQL and Redis: rules, ownership, and a cache that is never stale."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.cache import JsonCache
from core.errors import ConflictError, NotFoundError, ValidationError
from core.panel import Panel
from core.settings import Settings
from tests.conftest import reset_state

PASSWORD = "correct horse battery"


async def two_users(panel: Panel) -> tuple[int, int]:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    return alice.id, bob.id


async def test_create_list_get_delete(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    created = await panel.projects.create(alice, "my-app")
    assert (created.name, created.user_id, created.versions) == ("my-app", alice, 0)
    await panel.projects.create(alice, "blog2")
    assert [p.name for p in await panel.projects.list(alice)] == ["blog2", "my-app"]
    assert (await panel.projects.get(alice, "my-app")).id == created.id
    with pytest.raises(ValidationError, match="Type the project's name, 'my-app', to confirm"):
        await panel.projects.delete(alice, "my-app", "my-ap")
    await panel.projects.delete(alice, "my-app", "my-app")
    assert [p.name for p in await panel.projects.list(alice)] == ["blog2"]
    with pytest.raises(NotFoundError):
        await panel.projects.get(alice, "my-app")


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
        await panel.projects.create(alice, name)
    assert await panel.projects.list(alice) == []


async def test_names_are_unique_across_users(panel: Panel) -> None:
    alice, bob = await two_users(panel)
    await panel.projects.create(alice, "shop")
    with pytest.raises(ConflictError, match="'shop' is taken"):
        await panel.projects.create(bob, "shop")


async def test_another_users_project_is_not_found_like_a_missing_one(panel: Panel) -> None:
    alice, bob = await two_users(panel)
    await panel.projects.create(alice, "shop")
    with pytest.raises(NotFoundError) as theirs:
        await panel.projects.get(bob, "shop")
    with pytest.raises(NotFoundError) as missing:
        await panel.projects.get(bob, "nothing")
    assert theirs.value.message.replace("shop", "X") == missing.value.message.replace(
        "nothing", "X"
    )
    with pytest.raises(NotFoundError):
        await panel.projects.delete(bob, "shop", "shop")
    assert [p.name for p in await panel.projects.list(alice)] == ["shop"]
    assert await panel.projects.list(bob) == []


async def test_lists_are_served_from_redis_and_every_write_is_seen_at_once(panel: Panel) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(alice, "first")
    assert [p.name for p in await panel.projects.list(alice)] == ["first"]
    # A row written behind the service's back is not seen: the list came from Redis...
    async with panel.pool.acquire() as conn:
        await conn.execute("INSERT INTO projects (user_id, name) VALUES ($1, 'sneaky')", alice)
    assert [p.name for p in await panel.projects.list(alice)] == ["first"]
    # ...and a write through the service is seen immediately, with no stale list.
    await panel.projects.create(alice, "second")
    assert [p.name for p in await panel.projects.list(alice)] == ["first", "second", "sneaky"]
    await panel.projects.delete(alice, "first", "first")
    assert [p.name for p in await panel.projects.list(alice)] == ["second", "sneaky"]


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
    await panel.projects.create(alice, "still-works")
    assert [p.name for p in await panel.projects.list(alice)] == ["still-works"]
    assert (await panel.projects.get(alice, "still-works")).name == "still-works"
    await panel.projects.delete(alice, "still-works", "still-works")
    assert await panel.projects.list(alice) == []


async def test_cache_keys_are_really_in_redis(panel: Panel, settings: Settings) -> None:
    alice, _ = await two_users(panel)
    await panel.projects.create(alice, "cached")
    await panel.projects.list(alice)
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = {key.decode() async for key in redis.scan_iter(f"ghst:projects:{alice}:*")}
    finally:
        await redis.aclose()
    assert any(key.endswith(":list") for key in keys)
