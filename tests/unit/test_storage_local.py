"""Storage keys, the factory, and the local-directory adapter's own files (no services)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from core.archives.storage import (
    INCOMING,
    LocalDirectoryStorage,
    MiB,
    S3Storage,
    storage_from_settings,
    validate_key,
    validate_prefix,
)
from core.errors import ValidationError
from core.settings import Settings


@pytest.mark.parametrize(
    "key", ["a", "projects/1/0123abcd", "a.b/c-d_e+f", "ünïcode/名前", ".hidden/x", "a..b"]
)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/./b", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("/etc/passwd", "relative"),
        ("a\0b", "forbidden character"),
        ("a\\b", "forbidden character"),
        (f"{INCOMING}/x", "reserved"),
        ("x" * 1025, "longer than 1024"),
        ("a/" + "y" * 256, "too long"),
    ],
)
def test_bad_keys_say_why(key: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_key(key)


def test_prefixes() -> None:
    assert validate_prefix("projects/7/", allow_empty=False) == "projects/7/"
    assert validate_prefix("logs/2024", allow_empty=False) == "logs/2024"
    assert validate_prefix("", allow_empty=True) == ""
    with pytest.raises(ValidationError, match="empty"):
        validate_prefix("", allow_empty=False)
    with pytest.raises(ValidationError):
        validate_prefix("../", allow_empty=True)


def test_s3_parts_cannot_be_smaller_than_s3_allows() -> None:
    with pytest.raises(ValueError, match="at least"):
        S3Storage("http://127.0.0.1:1", "bucket", part_size=4 * MiB)
    with pytest.raises(ValueError, match="max_in_flight"):
        S3Storage("http://127.0.0.1:1", "bucket", max_in_flight=0)


def factory_arguments(settings: Settings) -> dict[str, object]:
    return {
        "s3_endpoint": settings.s3_endpoint,
        "s3_bucket": settings.s3_bucket,
        "s3_access_key": settings.s3_access_key,
        "s3_secret_key": settings.s3_secret_key,
        "s3_region": settings.s3_region,
        "storage_dir": settings.archives_dir,
    }


async def test_the_factory_picks_s3_when_an_endpoint_is_set(tmp_path: Path) -> None:
    local = storage_from_settings(**factory_arguments(Settings(data_dir=tmp_path)))  # type: ignore[arg-type]
    assert isinstance(local, LocalDirectoryStorage)
    assert local.root == tmp_path / "archives"
    settings = Settings(s3_endpoint="http://127.0.0.1:9000", s3_bucket="b-1", s3_region="eu-west-1")
    s3 = storage_from_settings(**factory_arguments(settings))  # type: ignore[arg-type]
    assert isinstance(s3, S3Storage)
    assert (s3.endpoint_url, s3.bucket, s3.region, s3.part_size, s3.max_in_flight) == (
        "http://127.0.0.1:9000",
        "b-1",
        "eu-west-1",
        8 * MiB,
        4,
    )
    # Building it contacted nothing: the client is made on first use, in a worker thread.
    assert s3._client_instance is None
    await local.close()
    await s3.close()


async def test_uploads_in_progress_are_named_after_their_key(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path)
    try:
        writer = await storage.open_writer("projects/3/a b%c.tar.gz")
        await writer.write(b"x" * 10)
        names = await asyncio.to_thread(os.listdir, tmp_path / INCOMING)
        assert len(names) == 1 and names[0].endswith(".part")
        assert await storage.pending_uploads() == ["projects/3/a b%c.tar.gz"]
        await writer.complete()
        assert await storage.pending_uploads() == []
        assert (
            await asyncio.to_thread((tmp_path / "projects/3/a b%c.tar.gz").read_bytes) == b"x" * 10
        )
    finally:
        await storage.close()


async def test_delete_prefix_leaves_no_empty_folders(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path)
    try:
        for key in ("projects/1/a", "projects/1/deep/b", "projects/2/a"):
            writer = await storage.open_writer(key)
            await writer.write(b"x")
            await writer.complete()
        assert await storage.delete_prefix("projects/1/") == 2
        assert sorted(await asyncio.to_thread(os.listdir, tmp_path / "projects")) == ["2"]
        # And a later upload under the deleted folder still lands.
        writer = await storage.open_writer("projects/1/new")
        await writer.write(b"y")
        await writer.complete()
        assert await storage.size("projects/1/new") == 1
    finally:
        await storage.close()
