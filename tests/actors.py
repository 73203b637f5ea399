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
    return as_user(who)


def as_user(user_id: int) -> Actor:
    """The signed-in user `user_id`, acting on their own projects (every scope)."""
    return Actor("user", user_id, f"user {user_id}")
