"""Actors for tests that hold a user's id rather than the User (core.actor)."""

from __future__ import annotations

from core.actor import Actor


def as_user(user_id: int) -> Actor:
    """The signed-in user `user_id`, acting on their own projects (every scope)."""
    return Actor("user", user_id, f"user {user_id}")
