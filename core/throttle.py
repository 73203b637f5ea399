"""Failed-login throttling per username and per client address, counted in Redis.

If Redis is unreachable the counters live in this process instead: throttling must not switch
off just because the cache is down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import ThrottledError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThrottleLimits:
    max_failures_per_user: int = 5
    max_failures_per_ip: int = 20
    window_seconds: int = 900


class LoginThrottle:
    def __init__(self, redis: Redis, limits: ThrottleLimits) -> None:
        self._redis = redis
        self.limits = limits
        self._local: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    @staticmethod
    def _user_key(username: str) -> str:
        return f"ghst:login-fail:user:{username.lower()}"

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        return [
            (self._user_key(username), self.limits.max_failures_per_user),
            (f"ghst:login-fail:ip:{ip}", self.limits.max_failures_per_ip),
        ]

    async def check(self, username: str, ip: str) -> None:
        """Raise ThrottledError if this username or address failed too often lately."""
        for key, limit in self._keys(username, ip):
            count, ttl = await self._get(key)
            if count >= limit:
                minutes = max(1, math.ceil(ttl / 60))
                raise ThrottledError(
                    f"Too many failed logins. Try again in {minutes} minute"
                    f"{'s' if minutes != 1 else ''}."
                )

    async def record_failure(self, username: str, ip: str) -> None:
        for key, _limit in self._keys(username, ip):
            await self._incr(key)

    async def reset_user(self, username: str) -> None:
        key = self._user_key(username)
        self._local.pop(key, None)
        try:
            await self._redis.delete(key)
        except (RedisError, OSError) as error:
            log.warning("login throttle: redis unavailable (%s)", error)

    async def _get(self, key: str) -> tuple[int, float]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                raw, ttl = await pipe.execute()
            return int(raw or 0), float(max(ttl, 0))
        except (RedisError, OSError) as error:
            log.warning("login throttle: redis unavailable, counting locally (%s)", error)
            count, window_end = self._local.get(key, (0, 0.0))
            remaining = window_end - time.monotonic()
            return (count, remaining) if remaining > 0 else (0, 0.0)

    async def _incr(self, key: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.limits.window_seconds, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("login throttle: redis unavailable, counting locally (%s)", error)
            count, window_end = self._local.get(key, (0, 0.0))
            now = time.monotonic()
            if window_end <= now:
                count, window_end = 0, now + self.limits.window_seconds
            self._local[key] = (count + 1, window_end)
