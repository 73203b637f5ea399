"""bcrypt hashing, always off the event loop: one hash costs ~200 ms of CPU at cost 12."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

T = TypeVar("T")


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes (bcrypt 5 refuses more); a SHA-256 digest lets long
    # passphrases count in full.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


class PasswordHasher:
    def __init__(self, rounds: int = 12, max_threads: int | None = None) -> None:
        self.rounds = rounds
        # Bounded: a burst of logins queues here instead of starving every other thread user.
        self._executor = ThreadPoolExecutor(
            max_workers=max_threads or max(2, os.cpu_count() or 2), thread_name_prefix="bcrypt"
        )
        # Checked against when the username is unknown, so both cases take the same time. Any
        # digest after a salt of the same cost will do: checking costs what a real hash costs,
        # and making a real one here would spend a full hash on the event loop at start.
        self._dummy_hash = bcrypt.gensalt(rounds) + b"." * 31

    async def hash(self, password: str) -> str:
        def work() -> bytes:
            return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self.rounds))

        return (await self._run(work)).decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        target = hashed.encode() if hashed else self._dummy_hash

        def work() -> bool:
            return bcrypt.checkpw(_prehash(password), target)

        matches = await self._run(work)
        return matches and hashed is not None

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
