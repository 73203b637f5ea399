"""Shared fixtures: real PostgreSQL and Redis started for the session, a fresh Panel per test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from core.archives.service import ArchiveService
from core.archives.storage import S3Storage
from core.db.migrations import migrate
from core.panel import Panel
from core.settings import Settings
from tests.services import MotoServer, PostgresServer, RedisServer, SeaweedServer, running

TEST_DATABASE = "ghst_test"
TEST_INSTANCE = f"test{uuid.uuid4().hex[:8]}"
# Docker and nginx fixtures live in modules of their own.
pytest_plugins = ["tests.fixtures_docker", "tests.fixtures_nginx", "tests.fixtures_deploy"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running(PostgresServer, "ghst-pg-") as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running(RedisServer, "ghst-redis-") as server:
        yield server


@pytest.fixture(scope="session")
async def database_url(postgres_server: PostgresServer) -> str:
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        await conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
    finally:
        await conn.close()
    url = postgres_server.dsn(TEST_DATABASE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


@pytest.fixture
def settings(database_url: str, redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_server.url(),
        # Cost 4 keeps the suite fast; the default of 12 is checked in its own test.
        bcrypt_rounds=4,
        shutdown_grace=0.5,
        # Docker objects carry this instance label: never the machine's own panel's ("ghst").
        instance=TEST_INSTANCE,
        docker_pull=False,
    )


async def reset_state(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'"
        )
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


@pytest.fixture
async def panel(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    opened = await Panel.open(settings)
    yield opened
    await opened.close()


def with_settings(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """An S3 server (moto) over HTTP on a free loopback port, for the whole session."""
    with running(MotoServer, "ghst-moto-") as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """An S3 server (SeaweedFS) that stores on disk and checks SigV4 signatures and checksums,
    for the whole session. Its IAM API takes writes, so a test can add a user with fewer rights.
    It also answers over HTTPS, with a self-signed certificate (`ca_file`).
    """

    def make(root: Path) -> SeaweedServer:
        return SeaweedServer(root, options=("-s3.iam.readOnly=false",), tls=True)

    with running(make, "ghst-seaweed-") as server:
        yield server


def drop_bucket(storage: S3Storage) -> None:
    """Free the server's memory or disk: abort uploads, delete objects, delete the bucket.
    Call from a thread."""
    client = storage.client
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=storage.bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=storage.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=storage.bucket, Key=item["Key"])
    client.delete_bucket(Bucket=storage.bucket)


@contextlib.asynccontextmanager
async def panel_on_s3(
    panel: Panel, server: MotoServer | SeaweedServer, **options: Any
) -> AsyncIterator[Panel]:
    """`panel` storing its archives in a bucket of its own on `server`, dropped afterwards."""
    storage = S3Storage(
        server.endpoint_url,
        f"ghst-panel-{uuid.uuid4().hex[:12]}",
        server.access_key,
        server.secret_key,
        server.region,
        **options,
    )
    await storage.prepare()
    archives = ArchiveService(panel.pool, storage, panel.projects)
    try:
        yield dataclasses.replace(panel, storage=storage, archives=archives)
    finally:
        await asyncio.to_thread(drop_bucket, storage)
        await storage.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, so stopping or restarting it harms no other test."""
    with running(PostgresServer, "ghst-pg-own-") as server:
        yield server


@pytest.fixture
async def fragile_panel(own_postgres: PostgresServer, settings: Settings) -> AsyncIterator[Panel]:
    """A panel on `own_postgres`, for tests that take its database down."""
    panel = await Panel.open(dataclasses.replace(settings, database_url=own_postgres.dsn()))
    yield panel
    await panel.close()
