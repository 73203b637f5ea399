"""Password checks: an unknown account costs a full check, and nothing matches it."""

from __future__ import annotations

import bcrypt

from core.identity.passwords import PasswordHasher


async def test_a_password_matches_its_own_hash_only() -> None:
    hasher = PasswordHasher(rounds=4)
    try:
        hashed = await hasher.hash("correct horse")
        assert await hasher.verify("correct horse", hashed)
        assert not await hasher.verify("correct horsE", hashed)
    finally:
        hasher.close()


async def test_an_unknown_account_is_checked_at_the_same_cost_and_never_matches() -> None:
    hasher = PasswordHasher(rounds=5)
    try:
        # The equaliser hash is a bcrypt hash of the configured cost, so checking against it takes
        # as long as checking a real account's hash (a cheaper one would tell who exists).
        assert hasher._dummy_hash.startswith(b"$2b$05$") and len(hasher._dummy_hash) == 60
        assert not bcrypt.checkpw(b"anything", hasher._dummy_hash)
        for guess in ("", "correct horse", "." * 31):
            assert not await hasher.verify(guess, None)
    finally:
        hasher.close()
