"""Accounts against the real PostgreSQL and Redis: what a user signing up and logging in meets."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ThrottledError,
    ValidationError,
)
from core.identity.keys import parse_public_key
from core.identity.passwords import PasswordHasher
from core.panel import Panel
from core.settings import Settings
from tests.actors import SYSTEM, acting
from tests.conftest import reset_state

PASSWORD = "correct horse battery"


def new_key(tmp_path: Path, name: str = "id") -> str:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


async def test_sign_up_then_log_in_with_password(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "Alice@Example.com", PASSWORD)
    assert (user.username, user.email, user.is_blocked) == ("alice", "Alice@Example.com", False)
    logged_in = await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")
    assert logged_in.id == user.id


async def test_password_is_stored_as_bcrypt_never_in_clear(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    async with panel.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = 'alice'")
    assert stored.startswith("$2b$04$")  # the suite's cost; production default below
    assert PASSWORD not in stored
    assert Settings().bcrypt_rounds == 12


async def test_default_cost_12_hash_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher(rounds=12)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    hashed = await hasher.hash(PASSWORD)
    elapsed = time.perf_counter() - started
    task.cancel()
    hasher.close()
    assert hashed.startswith("$2b$12$")
    # The loop kept running while bcrypt worked: roughly one tick per 10 ms elapsed.
    assert ticks >= (elapsed / 0.01) * 0.5


async def test_wrong_password_and_unknown_user_get_the_same_message(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    with pytest.raises(AuthenticationError) as wrong:
        await panel.accounts.authenticate("alice", "not the password", "10.0.0.1")
    with pytest.raises(AuthenticationError) as unknown:
        await panel.accounts.authenticate("nobody", "not the password", "10.0.0.1")
    assert wrong.value.message == unknown.value.message == "Wrong username or password."


async def test_duplicates_are_refused_clearly(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    with pytest.raises(ConflictError, match="username 'alice' is taken"):
        await panel.accounts.sign_up("alice", "other@example.com", PASSWORD)
    with pytest.raises(ConflictError, match="email address is already used"):
        await panel.accounts.sign_up("bob", "ALICE@example.com", PASSWORD)


@pytest.mark.parametrize(
    ("username", "email", "password", "message"),
    [
        ("Al", "a@example.com", PASSWORD, "3 to 32"),
        ("9lives", "a@example.com", PASSWORD, "starts with a letter"),
        ("bob", "not-an-email", PASSWORD, "not a valid email"),
        ("bob", "bob@example.com", "short", "at least 10"),
    ],
)
async def test_sign_up_rules(
    panel: Panel, username: str, email: str, password: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await panel.accounts.sign_up(username, email, password)
    assert await panel.accounts.list(SYSTEM) == []  # nothing half-created


async def test_blocked_user_is_refused_and_unblocked_user_gets_back_in(panel: Panel) -> None:
    await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.accounts.block(SYSTEM, "alice")
    with pytest.raises(AuthenticationError, match="blocked"):
        await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")
    await panel.accounts.unblock(SYSTEM, "alice")
    assert (await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")).username == "alice"
    with pytest.raises(NotFoundError, match="No account named 'ghost'"):
        await panel.accounts.block(SYSTEM, "ghost")


async def test_change_password(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    with pytest.raises(AuthenticationError, match="current password"):
        await panel.accounts.change_password(
            acting(user.id), "wrong password!", "a brand new secret", "10.0.0.1"
        )
    with pytest.raises(ValidationError, match="at least 10"):
        await panel.accounts.change_password(acting(user.id), PASSWORD, "short", "10.0.0.1")
    await panel.accounts.change_password(
        acting(user.id), PASSWORD, "a brand new secret", "10.0.0.1"
    )
    with pytest.raises(AuthenticationError):
        await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")
    await panel.accounts.authenticate("alice", "a brand new secret", "10.0.0.1")


@pytest.fixture
async def strict_panel(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    opened = await Panel.open(
        dataclasses.replace(settings, login_max_failures=3, login_max_failures_per_ip=5)
    )
    yield opened
    await opened.close()


async def test_throttling_per_username_even_with_the_right_password(strict_panel: Panel) -> None:
    accounts = strict_panel.accounts
    await accounts.sign_up("alice", "alice@example.com", PASSWORD)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        with pytest.raises(AuthenticationError):
            await accounts.authenticate("alice", "guess guess guess", address)
    with pytest.raises(ThrottledError, match=r"Too many failed logins. Try again in 15 minutes."):
        await accounts.authenticate("alice", PASSWORD, "10.0.0.9")


async def test_throttling_per_address_across_usernames(strict_panel: Panel) -> None:
    accounts = strict_panel.accounts
    await accounts.sign_up("alice", "alice@example.com", PASSWORD)
    for name in ("u1", "u2", "u3", "u4", "u5"):
        with pytest.raises(AuthenticationError):
            await accounts.authenticate(name, "guess guess guess", "10.6.6.6")
    with pytest.raises(ThrottledError):
        await accounts.authenticate("alice", PASSWORD, "10.6.6.6")
    # Another address is not affected.
    await accounts.authenticate("alice", PASSWORD, "10.0.0.1")


async def test_throttled_message_does_not_reveal_whether_the_user_exists(
    strict_panel: Panel,
) -> None:
    accounts = strict_panel.accounts
    await accounts.sign_up("alice", "alice@example.com", PASSWORD)
    messages = []
    for name in ("alice", "nobody"):
        for index in range(3):
            with pytest.raises(AuthenticationError):
                await accounts.authenticate(name, "guess guess guess", f"10.1.{index}.{len(name)}")
        with pytest.raises(ThrottledError) as throttled:
            await accounts.authenticate(name, "guess guess guess", "10.2.0.1")
        messages.append(throttled.value.message)
    assert messages[0] == messages[1]


async def test_success_resets_the_username_counter(strict_panel: Panel) -> None:
    accounts = strict_panel.accounts
    await accounts.sign_up("alice", "alice@example.com", PASSWORD)
    for round_ in range(3):
        # Two failures per round: without the reset the third round would be throttled.
        for attempt in range(2):
            with pytest.raises(AuthenticationError):
                await accounts.authenticate(
                    "alice", "guess guess guess", f"10.{round_}.{attempt}.1"
                )
        await accounts.authenticate("alice", PASSWORD, f"10.{round_}.9.9")


async def test_guessing_the_current_password_is_throttled(strict_panel: Panel) -> None:
    accounts = strict_panel.accounts
    user = await accounts.sign_up("alice", "alice@example.com", PASSWORD)
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="current password"):
            await accounts.change_password(
                acting(user), "guess guess guess", "new password 123", "10.0.0.1"
            )
    with pytest.raises(ThrottledError):
        await accounts.change_password(acting(user), PASSWORD, "new password 123", "10.0.0.1")
    with pytest.raises(ThrottledError):  # and the same counter guards password logins
        await accounts.authenticate("alice", PASSWORD, "10.0.0.2")


async def test_throttling_keeps_working_when_redis_is_down(settings: Settings) -> None:
    await reset_state(settings)
    dead_redis = dataclasses.replace(
        settings, redis_url="redis://127.0.0.1:1/0", login_max_failures=2
    )
    panel = await Panel.open(dead_redis)
    try:
        await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                await panel.accounts.authenticate("alice", "guess guess guess", "10.0.0.1")
        with pytest.raises(ThrottledError):
            await panel.accounts.authenticate("alice", PASSWORD, "10.0.0.1")
    finally:
        await panel.close()


async def test_keys_add_list_login_remove(panel: Panel, tmp_path: Path) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    line = new_key(tmp_path, "laptop")
    added = await panel.keys.add(acting(alice.id), line)
    assert added.name == "laptop"
    assert added.fingerprint == parse_public_key(line).fingerprint
    assert [key.fingerprint for key in await panel.keys.list(acting(alice.id))] == [
        added.fingerprint
    ]
    # The key now logs alice in, and records when it was used.
    assert (await panel.accounts.authenticate_key(parse_public_key(line))).id == alice.id
    assert (await panel.keys.list(acting(alice.id)))[0].last_used_at is not None
    await panel.keys.remove(acting(alice.id), added.id)
    with pytest.raises(AuthenticationError):
        await panel.accounts.authenticate_key(parse_public_key(line))


async def test_a_key_belongs_to_one_account(panel: Panel, tmp_path: Path) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    line = new_key(tmp_path)
    await panel.keys.add(acting(alice.id), line, "work")
    with pytest.raises(ConflictError, match="already registered to an account"):
        await panel.keys.add(acting(bob.id), line, "mine now")
    with pytest.raises(ConflictError):
        await panel.keys.add(acting(alice.id), line, "again")
    assert await panel.keys.list(acting(bob.id)) == []


async def test_users_cannot_remove_each_others_keys(panel: Panel, tmp_path: Path) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    key = await panel.keys.add(acting(alice.id), new_key(tmp_path))
    with pytest.raises(NotFoundError, match="No such key on your account"):
        await panel.keys.remove(acting(bob.id), key.id)
    assert len(await panel.keys.list(acting(alice.id))) == 1
    assert (await panel.keys.count(acting(alice.id)), await panel.keys.count(acting(bob.id))) == (
        1,
        0,
    )


async def test_blocked_user_key_login_is_refused(panel: Panel, tmp_path: Path) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    line = new_key(tmp_path)
    await panel.keys.add(acting(alice.id), line)
    await panel.accounts.block(SYSTEM, "alice")
    with pytest.raises(AuthenticationError, match="blocked"):
        await panel.accounts.authenticate_key(parse_public_key(line))


async def test_bad_key_names_are_refused(panel: Panel, tmp_path: Path) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    with pytest.raises(ValidationError, match="key name"):
        await panel.keys.add(acting(alice.id), new_key(tmp_path), "<script>")
