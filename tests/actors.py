"""Actors for tests: the user a test acts as, and the operator (system) side."""

from __future__ import annotations

from core.actor import Actor
from core.identity.accounts import User

# What `ghst` on the host acts as: blocking accounts, listing them.
SYSTEM = Actor.system("tests")


def acting(who: User | int) -> Actor:
    """The actor of a signed-in user, from the account or its id."""
    if isinstance(who, User):
        return Actor.for_user(who)
    return Actor("user", who, f"user {who}")
