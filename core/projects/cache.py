"""A read-through JSON cache in Redis that never makes the panel depend on Redis.

Entries live under a per-scope generation number: a write bumps the generation (`invalidate`),
so a reader that loaded old rows from PostgreSQL just before the write stores them under a
generation nobody reads any more. No stale list survives a write, even with racing readers.
When Redis is down every call falls through to the loader: slower, never an error.

"Not found" answers (a loader returning None) are cached too, but a client can ask for any
number of names that do not exist: at most `max_misses` of them are stored per window of `ttl`
seconds, each expiring with its window, so no more than `max_misses` ever live at once. Past
that the lookups simply go to PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_TTL = 300
DEFAULT_MAX_MISSES = 10000


class JsonCache:
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        ttl: int = DEFAULT_TTL,
        max_misses: int = DEFAULT_MAX_MISSES,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self.ttl = ttl
        self.max_misses = max_misses

    def _generation_key(self, scope: str) -> str:
        return f"ghst:{self._namespace}:gen:{scope}"

    async def get_or_load(self, scope: str, item: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The cached JSON value of `item` in `scope`, else `load()` (stored for next time)."""
        try:
            generation = int(await self._redis.get(self._generation_key(scope)) or 0)
            key = f"ghst:{self._namespace}:{scope}:{generation}:{item}"
            cached = await self._redis.get(key)
        except (RedisError, OSError) as error:
            log.warning(
                "cache %s: redis unavailable, reading PostgreSQL (%s)", self._namespace, error
            )
            return await load()
        if cached is not None:
            return json.loads(cached)
        value = await load()
        try:
            ttl = self.ttl if value is not None else await self._miss_ttl()
            if ttl > 0:
                await self._redis.set(key, json.dumps(value), ex=ttl)
        except (RedisError, OSError) as error:
            log.warning("cache %s: cannot store (%s)", self._namespace, error)
        return value

    async def _miss_ttl(self) -> int:
        """How long a "not found" may stay cached: the rest of the current miss window, or 0
        when that window already holds `max_misses` of them."""
        budget = f"ghst:{self._namespace}:misses"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(budget)
            pipe.expire(budget, self.ttl, nx=True)
            pipe.ttl(budget)
            count, _, remaining = await pipe.execute()
        if int(count) > self.max_misses:
            return 0
        return max(int(remaining), 0)

    async def invalidate(self, scope: str) -> None:
        """Forget everything cached for `scope` (call after the write has committed)."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._generation_key(scope))
                pipe.expire(self._generation_key(scope), self.ttl * 4)
                await pipe.execute()
        except (RedisError, OSError) as error:
            # Entries expire after `ttl` anyway; while Redis is down nothing is read from it.
            log.warning("cache %s: cannot invalidate %s (%s)", self._namespace, scope, error)
