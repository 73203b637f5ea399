"""Throttling of password attempts (per username and per client address) and of sign-ups (per
address), counted in Redis.

An attempt is counted *before* the password is checked, in one atomic step (INCR and EXPIRE
in a MULTI): N logins racing each other get N distinct counts, so at most the limit of them
ever reach bcrypt. A login that succeeds gives its attempt back (the username's count is reset,
the address's one decremented), so only failures and attempts still running use the budget.

If Redis is unreachable the counters live in this process instead: throttling must not switch
off just because the cache is down. Those counters are read and written without an `await`
in between, which makes them atomic on the event loop as well.
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

# Decrement only a counter that still exists: a DECR on an expired key would leave -1 forever.
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class ThrottleLimits:
    max_failures_per_user: int = 5
    max_failures_per_ip: int = 20
    window_seconds: int = 900
    max_signups_per_ip: int = 10
    signup_window_seconds: int = 3600


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class LoginThrottle:
    def __init__(self, redis: Redis, limits: ThrottleLimits) -> None:
        self._redis = redis
        self.limits = limits
        self._local: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    @staticmethod
    def _user_key(username: str) -> str:
        return f"ghst:login-fail:user:{username.lower()}"

    @staticmethod
    def _ip_key(ip: str) -> str:
        return f"ghst:login-fail:ip:{ip}"

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        return [
            (self._user_key(username), self.limits.max_failures_per_user),
            (self._ip_key(ip), self.limits.max_failures_per_ip),
        ]

    async def attempt(self, username: str, ip: str) -> None:
        """Count one password attempt for this username and address, then raise ThrottledError
        if either went over its limit. Call before checking the password; call `succeeded`
        when it was right."""
        keys = self._keys(username, ip)
        counts = await self._count([key for key, _ in keys], self.limits.window_seconds)
        for (_key, limit), (count, ttl) in zip(keys, counts, strict=True):
            if count > limit:
                raise ThrottledError(f"Too many failed logins. Try again in {_minutes(ttl)}.")

    async def succeeded(self, username: str, ip: str) -> None:
        """The password was right: forget the username's failures, give the address's slot
        back."""
        await self._release(self._ip_key(ip), forget=self._user_key(username))

    async def give_back(self, username: str, ip: str) -> None:
        """The attempt could not be checked (the database is down): it was no guess."""
        await self._release(self._user_key(username), self._ip_key(ip))

    async def _release(self, *keys: str, forget: str | None = None) -> None:
        if forget is not None:
            self._local.pop(forget, None)
        for key in keys:
            count, window_end = self._local.get(key, (0, 0.0))
            if count > 0:
                self._local[key] = (count - 1, window_end)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if forget is not None:
                    pipe.delete(forget)
                for key in keys:
                    pipe.eval(_GIVE_BACK, 1, key)
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("throttle: redis unavailable (%s)", error)

    async def reset_user(self, username: str) -> None:
        key = self._user_key(username)
        self._local.pop(key, None)
        try:
            await self._redis.delete(key)
        except (RedisError, OSError) as error:
            log.warning("login throttle: redis unavailable (%s)", error)

    async def sign_up_attempt(self, ip: str) -> None:
        """Count one sign-up from this address; ThrottledError past the limit."""
        [(count, ttl)] = await self._count(
            [f"ghst:signup:ip:{ip}"], self.limits.signup_window_seconds
        )
        if count > self.limits.max_signups_per_ip:
            raise ThrottledError(
                f"Too many accounts were created from your address. Try again in {_minutes(ttl)}."
            )

    async def _count(self, keys: list[str], window: int) -> list[tuple[int, float]]:
        """Increment each key (its window starts at its first count); (count, seconds left)."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, window, nx=True)
                    pipe.ttl(key)
                replies = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("throttle: redis unavailable, counting locally (%s)", error)
            return [self._count_locally(key, window) for key in keys]
        return [
            (int(replies[index]), float(max(replies[index + 2], 0)))
            for index in range(0, len(replies), 3)
        ]

    def _count_locally(self, key: str, window: int) -> tuple[int, float]:
        now = time.monotonic()
        count, window_end = self._local.get(key, (0, 0.0))
        if window_end <= now:
            count, window_end = 0, now + window
        self._local[key] = (count + 1, window_end)
        return count + 1, window_end - now
