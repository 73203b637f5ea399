"""Environment variables of projects against the real PostgreSQL: rules, limits, ownership."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import NotFoundError, PanelError, ValidationError
from core.panel import Panel
from core.projects.env_vars import MAX_VALUE_BYTES, MAX_VARS, EnvVar, mask
from tests.actors import acting

PASSWORD = "correct horse battery"


async def alice_with_shop(panel: Panel) -> int:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", PASSWORD)
    await panel.projects.create(acting(alice.id), "shop")
    return alice.id


async def test_set_list_change_and_unset(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    assert await panel.env.list(acting(alice), "shop") == []
    created = await panel.env.set(acting(alice), "shop", "SECRET_KEY", "s3cr3t-value-123")
    assert created == EnvVar("SECRET_KEY", "s3cr3t-value-123")
    await panel.env.set(acting(alice), "shop", "DEBUG", "0")
    await panel.env.set(acting(alice), "shop", "api_token", "")
    await panel.env.set(acting(alice), "shop", "_PRIVATE", "x")
    # Sorted by name, byte by byte: upper case before underscore before lower case.
    assert [var.name for var in await panel.env.list(acting(alice), "shop")] == [
        "DEBUG",
        "SECRET_KEY",
        "_PRIVATE",
        "api_token",
    ]
    changed = await panel.env.set(acting(alice), "shop", "DEBUG", "1")
    assert changed.value == "1"
    assert (await panel.env.list(acting(alice), "shop"))[0] == EnvVar("DEBUG", "1")
    await panel.env.unset(acting(alice), "shop", "DEBUG")
    assert [var.name for var in await panel.env.list(acting(alice), "shop")] == [
        "SECRET_KEY",
        "_PRIVATE",
        "api_token",
    ]
    with pytest.raises(NotFoundError, match="shop has no variable named 'DEBUG'"):
        await panel.env.unset(acting(alice), "shop", "DEBUG")


async def test_names_are_case_sensitive_and_trimmed(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    await panel.env.set(acting(alice), "shop", "  Mode ", "a")
    await panel.env.set(acting(alice), "shop", "MODE", "b")
    assert await panel.env.list(acting(alice), "shop") == [EnvVar("MODE", "b"), EnvVar("Mode", "a")]


async def test_the_deployer_gets_the_variables_as_a_mapping(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    project = await panel.projects.get(acting(alice), "shop")
    assert await panel.env.as_mapping(project.id) == {}
    await panel.env.set(acting(alice), "shop", "A", "1")
    await panel.env.set(acting(alice), "shop", "MULTI_LINE", "line one\nline two = 'quoted'")
    assert await panel.env.as_mapping(project.id) == {
        "A": "1",
        "MULTI_LINE": "line one\nline two = 'quoted'",
    }
    await panel.projects.delete(acting(alice), "shop", "shop")
    assert await panel.env.as_mapping(project.id) == {}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Enter a name for the variable."),
        ("   ", "Enter a name for the variable."),
        ("1ST", "does not start with a digit"),
        ("MY-VAR", "letters, digits and underscores"),
        ("MY VAR", "letters, digits and underscores"),
        ("A=B", "letters, digits and underscores"),
        ("CAFÉ", "letters, digits and underscores"),
        ("A" * 129, "at most 128 characters"),
        ("PORT", "PORT is set by the panel itself"),
        ("GHST_PROJECT", "Names starting with GHST_ are kept for the panel"),
        ("GHST_", "Names starting with GHST_ are kept for the panel"),
    ],
)
async def test_names_that_are_refused(panel: Panel, name: str, message: str) -> None:
    alice = await alice_with_shop(panel)
    with pytest.raises(ValidationError, match=message):
        await panel.env.set(acting(alice), "shop", name, "value")
    assert await panel.env.list(acting(alice), "shop") == []


async def test_names_near_the_rules_are_accepted(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    for name in ("A" * 128, "_", "port", "Port", "MY_PORT", "GHST", "ghst_x", "X_GHST_Y"):
        await panel.env.set(acting(alice), "shop", name, "v")
    assert len(await panel.env.list(acting(alice), "shop")) == 8


async def test_value_limits(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    biggest = "x" * MAX_VALUE_BYTES
    assert (await panel.env.set(acting(alice), "shop", "BIG", biggest)).value == biggest
    with pytest.raises(ValidationError, match="at most 32 KiB"):
        await panel.env.set(acting(alice), "shop", "BIG", biggest + "x")
    # Counted in UTF-8 bytes: 'é' takes two.
    with pytest.raises(ValidationError, match="at most 32 KiB"):
        await panel.env.set(acting(alice), "shop", "ACCENTS", "é" * (MAX_VALUE_BYTES // 2 + 1))
    with pytest.raises(ValidationError, match="cannot contain a NUL character"):
        await panel.env.set(acting(alice), "shop", "NUL", "a\x00b")
    with pytest.raises(ValidationError, match="valid text"):
        await panel.env.set(acting(alice), "shop", "BROKEN", "a\udcffb")
    assert [var.name for var in await panel.env.list(acting(alice), "shop")] == ["BIG"]
    assert (await panel.env.list(acting(alice), "shop"))[0].value == biggest


async def test_at_most_100_variables_but_existing_ones_can_change(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    for number in range(MAX_VARS):
        await panel.env.set(acting(alice), "shop", f"VAR_{number:03d}", str(number))
    with pytest.raises(ValidationError, match="at most 100 variables"):
        await panel.env.set(acting(alice), "shop", "ONE_MORE", "x")
    await panel.env.set(acting(alice), "shop", "VAR_000", "changed")
    await panel.env.unset(acting(alice), "shop", "VAR_099")
    await panel.env.set(acting(alice), "shop", "ONE_MORE", "x")
    listed = await panel.env.list(acting(alice), "shop")
    assert len(listed) == MAX_VARS
    assert EnvVar("VAR_000", "changed") in listed and EnvVar("ONE_MORE", "x") in listed


async def test_the_limit_holds_when_adds_race(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    for number in range(MAX_VARS - 3):
        await panel.env.set(acting(alice), "shop", f"VAR_{number:03d}", "v")
    results = await asyncio.gather(
        *(panel.env.set(acting(alice), "shop", f"RACE_{n}", "v") for n in range(8)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ValidationError)]
    assert len(refused) == 5
    assert all(isinstance(r, EnvVar | ValidationError) for r in results)
    assert len(await panel.env.list(acting(alice), "shop")) == MAX_VARS


async def test_another_users_project_is_not_found(panel: Panel) -> None:
    alice = await alice_with_shop(panel)
    await panel.env.set(acting(alice), "shop", "SECRET", "alice's")
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    missing = "You have no project named 'shop'."
    calls = [
        panel.env.list(acting(bob.id), "shop"),
        panel.env.set(acting(bob.id), "shop", "SECRET", "bob's"),
        panel.env.set(acting(bob.id), "shop", "NEW", "bob's"),
        panel.env.unset(acting(bob.id), "shop", "SECRET"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as raised:
            await call
        assert raised.value.message == missing
    with pytest.raises(NotFoundError) as raised:
        await panel.env.list(acting(alice), "nothing-here")
    assert raised.value.message == "You have no project named 'nothing-here'."
    assert await panel.env.list(acting(alice), "shop") == [EnvVar("SECRET", "alice's")]


async def test_a_bad_name_is_refused_before_ownership_is_looked_up(panel: Panel) -> None:
    """Either way nothing is written; the message for a bad name does not depend on owners."""
    alice = await alice_with_shop(panel)
    bob = await panel.accounts.sign_up("bob", "bob@example.com", PASSWORD)
    for user in (alice, bob.id):
        with pytest.raises(PanelError, match="kept for the panel"):
            await panel.env.set(acting(user), "shop", "GHST_X", "v")


def test_values_are_masked_without_telling_their_length() -> None:
    assert mask("") == ""
    assert mask("a") == "••••"
    assert mask("12345678") == "••••"
    assert mask("123456789") == "12••••"
    assert mask("sk_live_" + "x" * 200) == "sk••••"
    assert EnvVar("TOKEN", "abcdefghijk").masked == "ab••••"
