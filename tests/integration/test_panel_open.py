"""Panel.open and Panel.close: a step that fails closes everything the steps before it opened.

Against the real PostgreSQL and Redis of the suite. The outside systems fail for real where they
can (a missing database, a Redis URL it cannot use, an S3 server that is not there, a data
directory that cannot hold the JWT key); the steps that touch nothing outside while the panel
opens (Docker and nginx are only reached on a deploy) are made to fail by replacing them. Each
time, the pool is closed, its connections are gone from the server, every other resource opened
so far was closed once, and no task is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import core.panel
from core.db.pool import Pool
from core.panel import Panel
from core.settings import Settings


class StepFailed(Exception):
    """Raised by a step made to fail."""


@dataclasses.dataclass
class Ledger:
    """The resources Panel.open made, and how often each was closed."""

    pools: list[Pool] = dataclasses.field(default_factory=list)
    opened: list[tuple[str, object]] = dataclasses.field(default_factory=list)
    closes: dict[int, int] = dataclasses.field(default_factory=dict)

    def record(self, name: str, resource: Any, close: str) -> Any:
        """Remember `resource`; count calls of its `close` method (which Panel.open registers)."""
        self.opened.append((name, resource))
        original = getattr(resource, close)
        key = id(resource)
        self.closes[key] = 0

        if asyncio.iscoroutinefunction(original):

            async def counted_async() -> None:
                self.closes[key] += 1
                await original()

            setattr(resource, close, counted_async)
        else:

            def counted() -> None:
                self.closes[key] += 1
                original()

            setattr(resource, close, counted)
        return resource

    def not_closed_once(self) -> list[str]:
        return [name for name, resource in self.opened if self.closes[id(resource)] != 1]


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """Watch every resource Panel.open makes that needs closing."""
    found = Ledger()
    real_create_pool = core.panel.create_pool

    async def create_pool(dsn: str) -> Pool:
        pool = await real_create_pool(dsn)
        found.pools.append(pool)
        return pool

    monkeypatch.setattr(core.panel, "create_pool", create_pool)
    real_redis = core.panel.Redis

    class Redis:
        @staticmethod
        def from_url(url: str, **options: Any) -> Any:
            return found.record("redis", real_redis.from_url(url, **options), "aclose")

    monkeypatch.setattr(core.panel, "Redis", Redis)
    for name, close in [
        ("PasswordHasher", "close"),
        ("storage_from_settings", "close"),
        ("DockerEngine", "close"),
        ("Deployer", "close"),
    ]:
        monkeypatch.setattr(
            core.panel, name, recording(found, name, getattr(core.panel, name), close)
        )
    return found


def recording(
    ledger: Ledger, name: str, make: Callable[..., Any], close: str
) -> Callable[..., Any]:
    def made(*args: Any, **kwargs: Any) -> Any:
        return ledger.record(name, make(*args, **kwargs), close)

    return made


def failing(*args: Any, **kwargs: Any) -> Any:
    raise StepFailed


async def server_connections(settings: Settings) -> int:
    """Connections to the panel's database, other than the one asking."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def assert_nothing_left(
    ledger: Ledger, settings: Settings, connections: int, tasks: set[asyncio.Task[Any]]
) -> None:
    assert all(pool.is_closing() for pool in ledger.pools)
    assert ledger.not_closed_once() == []
    assert await server_connections(settings) == connections
    await asyncio.sleep(0)  # let callbacks scheduled by the clean-up run
    assert other_tasks() - tasks == set()


# Steps in the order Panel.open takes them; each one opened what is listed before it.
REPLACED_STEPS = [
    ("migrate", []),
    ("load_installation", []),
    ("PasswordHasher", ["redis"]),
    ("jwt_secret", ["redis", "PasswordHasher"]),
    ("LoginThrottle", ["redis", "PasswordHasher"]),
    ("ProjectService", ["redis", "PasswordHasher"]),
    ("storage_from_settings", ["redis", "PasswordHasher"]),
    ("ArchiveService", ["redis", "PasswordHasher", "storage_from_settings"]),
    ("nginx_router", ["redis", "PasswordHasher", "storage_from_settings"]),
    ("DockerEngine", ["redis", "PasswordHasher", "storage_from_settings"]),
    ("ComposeRunner", ["redis", "PasswordHasher", "storage_from_settings", "DockerEngine"]),
    ("DeploymentQueue", ["redis", "PasswordHasher", "storage_from_settings", "DockerEngine"]),
    ("Deployer", ["redis", "PasswordHasher", "storage_from_settings", "DockerEngine"]),
]


@pytest.mark.parametrize(("step", "opened_before"), REPLACED_STEPS)
async def test_a_failing_step_closes_what_came_before(
    step: str,
    opened_before: list[str],
    settings: Settings,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core.panel, step, failing)
    connections, tasks = await server_connections(settings), other_tasks()
    with pytest.raises(StepFailed):
        await Panel.open(settings)
    assert [name for name, _ in ledger.opened] == opened_before
    assert len(ledger.pools) == 1
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_a_missing_database_leaves_nothing(settings: Settings, ledger: Ledger) -> None:
    url = settings.database_url.rsplit("/", 1)[0] + "/no_such_database"
    connections, tasks = await server_connections(settings), other_tasks()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await Panel.open(dataclasses.replace(settings, database_url=url))
    assert ledger.pools == []
    assert ledger.opened == []
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_a_redis_url_it_cannot_use_closes_the_pool(
    settings: Settings, ledger: Ledger
) -> None:
    connections, tasks = await server_connections(settings), other_tasks()
    with pytest.raises(ValueError, match="Redis URL"):
        await Panel.open(dataclasses.replace(settings, redis_url="memcached://127.0.0.1:11211"))
    assert len(ledger.pools) == 1
    assert ledger.opened == []
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_a_data_dir_that_cannot_hold_the_jwt_key_closes_redis_and_the_pool(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    connections, tasks = await server_connections(settings), other_tasks()
    with pytest.raises(NotADirectoryError):
        await Panel.open(dataclasses.replace(settings, data_dir=blocker / "data"))
    assert [name for name, _ in ledger.opened] == ["redis", "PasswordHasher"]
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_an_s3_server_that_is_not_there_closes_everything_opened(
    settings: Settings, ledger: Ledger
) -> None:
    down = dataclasses.replace(
        settings,
        s3_endpoint=f"http://127.0.0.1:{closed_port()}",
        s3_access_key="ghst",
        s3_secret_key="not-a-secret",
    )
    connections, tasks = await server_connections(settings), other_tasks()
    with pytest.raises(Exception) as failure:
        await Panel.open(down)
    assert not isinstance(failure.value, StepFailed)
    assert [name for name, _ in ledger.opened] == [
        "redis",
        "PasswordHasher",
        "storage_from_settings",
    ]
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_close_unwinds_everything_once(settings: Settings, ledger: Ledger) -> None:
    connections, tasks = await server_connections(settings), other_tasks()
    panel = await Panel.open(settings)
    assert [name for name, _ in ledger.opened] == [
        "redis",
        "PasswordHasher",
        "storage_from_settings",
        "DockerEngine",
        "Deployer",
    ]
    assert await panel.accounts.find_by_username("nobody") is None
    assert await server_connections(settings) > connections
    await panel.close()
    await panel.close()  # a second close finds nothing left to close
    await assert_nothing_left(ledger, settings, connections, tasks)


async def test_the_services_carry_no_infrastructure(panel: Panel) -> None:
    services = panel.services
    for name in ("pool", "redis", "engine", "router", "queue", "deployer", "storage", "compose"):
        assert not hasattr(services, name), name
    assert services.projects is panel.projects
    assert services.settings is panel.settings
