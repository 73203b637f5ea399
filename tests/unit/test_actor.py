"""Actors: what a user, an admin, a token and the system may do."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from core.actor import Actor
from core.errors import PermissionDenied
from core.identity.accounts import User


def user(user_id: int = 7, *, admin: bool = False) -> User:
    return User(user_id, f"u{user_id}", f"u{user_id}@example.com", admin, datetime.now(UTC), None)


def test_a_user_acts_on_their_own_rows_only() -> None:
    actor = Actor.for_user(user(7))
    assert actor.may_own(7)
    assert not actor.may_own(8)
    assert actor.owner_id == 7
    actor.require("deploy")


def test_only_an_admin_becomes_an_admin_actor() -> None:
    with pytest.raises(PermissionDenied):
        Actor.for_admin(user(7))
    assert Actor.for_admin(user(1, admin=True)).may_own(8)


def test_a_token_is_limited_to_its_scopes_and_projects() -> None:
    actor = Actor.for_token(
        user(7),
        token_id=3,
        prefix="ghst_ab",
        scopes=frozenset({"read"}),
        projects=frozenset({"blog"}),
    )
    actor.require("read")
    with pytest.raises(PermissionDenied, match="'deploy' scope"):
        actor.require("deploy")
    actor.require_project("blog")
    with pytest.raises(PermissionDenied, match="'shop'"):
        actor.require_project("shop")
    assert not actor.may_own(8)


def test_a_users_admin_scoped_token_does_not_make_them_an_admin() -> None:
    actor = Actor.for_token(
        user(7), token_id=3, prefix="ghst_ab", scopes=frozenset({"admin", "read"})
    )
    assert not actor.is_operator
    assert not actor.may_own(8)
    admin = Actor.for_token(
        user(1, admin=True), token_id=4, prefix="ghst_cd", scopes=frozenset({"admin"})
    )
    assert admin.is_operator


def test_the_system_owns_nothing_but_may_touch_everything() -> None:
    actor = Actor.system("worker")
    assert actor.may_own(8)
    with pytest.raises(PermissionDenied):
        _ = actor.owner_id


def test_acting_from_sets_where_a_request_came_from_and_keeps_the_rest() -> None:
    token = Actor.for_token(
        user(7), token_id=3, prefix="ghst_ab12", scopes=frozenset({"read"}),
        projects=frozenset({"shop"}),
    )  # fmt: skip
    seen = token.acting_from("command", source_address="192.0.2.1", request_id="r-1")
    assert (seen.origin, seen.source_address, seen.request_id) == ("command", "192.0.2.1", "r-1")
    assert (seen.kind, seen.label, seen.scopes, seen.projects, seen.token_id) == (
        token.kind, token.label, token.scopes, token.projects, token.token_id,
    )  # fmt: skip
    # Nobody said where from: recorded as internal, never guessed.
    assert Actor.system("worker").origin == "internal"


def test_an_operator_reads_everything_and_may_change_nothing() -> None:
    operator = Actor.for_staff(replace(user(5), role="operator"))
    assert operator.kind == "operator" and operator.reads_everything
    operator.require_staff()
    assert not operator.is_operator  # what every changing service checks
    assert not operator.may_own(8)  # the other services see a user, on their own rows
    with pytest.raises(PermissionDenied, match="An operator can look, not change"):
        operator.require_admin()
    with pytest.raises(PermissionDenied):
        operator.require("deploy")


def test_staff_are_admins_operators_and_the_system_only() -> None:
    admin = Actor.for_staff(user(1, admin=True))
    admin.require_staff()
    admin.require_admin()
    Actor.system("cli").require_admin()
    with pytest.raises(PermissionDenied):
        Actor.for_staff(user(7))
    for nobody in (
        Actor.for_user(user(7)),
        Actor.for_token(user(7), token_id=1, prefix="t", scopes=frozenset({"admin"})),
    ):
        with pytest.raises(PermissionDenied):
            nobody.require_staff()
        with pytest.raises(PermissionDenied):
            nobody.require_admin()


def test_a_viewer_reads_the_viewed_rows_as_the_admin_and_changes_nothing() -> None:
    admin = Actor.for_admin(user(1, admin=True)).acting_from("admin", source_address="10.0.0.1")
    viewer = Actor.viewing_as(admin, user(7))
    assert (viewer.kind, viewer.user_id, viewer.owner_id) == ("viewer", 1, 7)
    assert viewer.label == "u1 viewing as u7"
    assert (viewer.origin, viewer.source_address) == ("admin", "10.0.0.1")
    assert viewer.recorded_kind == "admin"
    assert viewer.may_own(7)
    assert not viewer.may_own(1)  # not the admin's own rows
    assert not viewer.may_own(8)
    assert not (viewer.is_operator or viewer.reads_everything or viewer.sees_secrets)
    viewer.require("read")
    viewer.require("logs")
    for refused in (
        lambda: viewer.require("deploy"),
        lambda: viewer.require("env:write"),
        viewer.require_change,
        viewer.require_admin,
        lambda: Actor.viewing_as(viewer, user(8)),
    ):
        with pytest.raises(PermissionDenied, match=r"^Viewing as u7: read-only\.$"):
            refused()


def test_only_admins_and_the_system_view_as_a_user() -> None:
    assert Actor.viewing_as(Actor.system("admin"), user(7)).recorded_kind == "system"
    operator = replace(user(2), role="operator")
    for actor in (Actor.for_staff(operator), Actor.for_user(user(3))):
        with pytest.raises(PermissionDenied):
            Actor.viewing_as(actor, user(7))
