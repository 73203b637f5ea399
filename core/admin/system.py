"""`:system`: is each outside system reachable, which version, how fast; disk free; the queue.

Each check runs with its own time limit, all at once, so one dead system (a dockerd that
hangs) costs `CHECK_SECONDS`, not the sum, and says why it failed instead of failing the view.
The checks are the composition root's business (they need the pool, Redis, storage, Docker
and nginx); front ends reach them through `AdminService.system`.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from core.archives.storage import ObjectStorage
from core.db.pool import Pool
from core.deploy.store import DeploymentStore
from core.identity.sessions import SessionService
from core.routing.nginx import NginxRouter
from core.runtime.engine import DockerEngine
from core.settings import Settings

CHECK_SECONDS = 3.0
PROBE_KEY = "ghst-system-check/none"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    version: str
    latency_ms: float | None
    detail: str


async def _timed(name: str, probe: Callable[[], Awaitable[tuple[str, str]]]) -> Check:
    """`probe()` -> (version, detail), timed and bounded; a failure is a failed check."""
    started = time.perf_counter()
    try:
        version, detail = await asyncio.wait_for(probe(), CHECK_SECONDS)
    except TimeoutError:
        return Check(name, False, "", None, f"no answer within {CHECK_SECONDS:g} s")
    except Exception as error:  # any failure is what the operator must read
        return Check(name, False, "", None, f"{type(error).__name__}: {str(error)[:120]}")
    return Check(name, True, version, (time.perf_counter() - started) * 1000, detail)


def _free(path: Path) -> str:
    usage = shutil.disk_usage(path)
    return f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({path})"


def _free_if_here(path: Path) -> str:
    """dockerd may run on another host: its data root is then not a folder here."""
    return _free(path) if path.is_dir() else f"data root {path} is not on this host"


class SystemChecks:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        redis: Redis,
        storage: ObjectStorage,
        engine: DockerEngine,
        router: NginxRouter,
        sessions: SessionService,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._redis = redis
        self._storage = storage
        self._engine = engine
        self._router = router
        self._sessions = sessions
        self._store = DeploymentStore(pool)

    async def run(self) -> list[Check]:
        return list(
            await asyncio.gather(
                _timed("PostgreSQL", self._postgres),
                _timed("Redis", self._redis_check),
                _timed("Object storage", self._storage_check),
                _timed("dockerd", self._docker),
                _timed("nginx", self._nginx),
                _timed("Disk: data", lambda: self._disk(self._settings.data_dir)),
                _timed("Disk: archives", lambda: self._disk(self._settings.archives_dir)),
                _timed("Deployments queue", self._queue),
                _timed("Login sessions", self._logins),
            )
        )

    async def _postgres(self) -> tuple[str, str]:
        async with self._pool.acquire() as conn:
            version: str = await conn.fetchval("SHOW server_version")
        return version, f"pool of {self._pool.get_size()} connections"

    async def _redis_check(self) -> tuple[str, str]:
        await self._redis.ping()
        info = await self._redis.info("server")
        return str(info.get("redis_version", "?")), ""

    async def _storage_check(self) -> tuple[str, str]:
        await self._storage.exists(PROBE_KEY)
        kind = f"S3 {self._settings.s3_endpoint}" if self._settings.s3_endpoint else "local"
        return "", kind

    async def _docker(self) -> tuple[str, str]:
        version, root = await self._engine.version()
        return version, await asyncio.to_thread(_free_if_here, Path(root))

    async def _nginx(self) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            self._settings.nginx_binary,
            "-v",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        version = err.decode(errors="replace").strip().rpartition("/")[2]
        pid = await asyncio.to_thread(self._router.master_pid)
        return version, f"master pid {pid}" if pid else "not running here"

    async def _disk(self, path: Path) -> tuple[str, str]:
        return "", await asyncio.to_thread(_free, path)

    async def _queue(self) -> tuple[str, str]:
        queued, working = await self._store.queue_depth()
        return "", f"{queued} queued, {working} being worked on"

    async def _logins(self) -> tuple[str, str]:
        return "", f"{await self._sessions.open_count()} open, all panel processes"
