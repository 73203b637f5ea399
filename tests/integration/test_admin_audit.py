"""`:audit`'s read model against the real PostgreSQL: every account's entries, narrowed in SQL by
actor, action, target, outcome, time and free text, paged on the id; staff only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.actor import Actor
from core.audit.entries import Target
from core.errors import PermissionDenied, ValidationError
from core.panel import Panel
from tests.actors import acting
from tests.integration.test_admin_views import people


async def ids(panel: Panel, actor: Actor, search: str, **paging: object) -> list[str]:
    rows = await panel.admin.audit(actor, search, **paging)  # type: ignore[arg-type]
    return [f"{row.actor_label} {row.action} {row.target_name} {row.outcome}" for row in rows]


async def test_staff_filter_every_accounts_entries_in_sql(panel: Panel) -> None:
    alice, olga, bob = await people(panel)
    admin = Actor.for_staff(alice).acting_from("admin")
    await panel.admin.block(admin, "bob")
    await panel.admin.unblock(admin, "bob")
    await panel.audit.record(acting(bob), "project.delete", Target("project", "blog"), "refused")
    operator = Actor.for_staff(olga)

    everything = await ids(panel, operator, "")
    assert everything[:3] == [
        "bob project.delete blog refused",
        "alice account.unblock bob ok",
        "alice account.block bob ok",
    ]
    assert await ids(panel, operator, "actor:alice") == [
        "alice account.unblock bob ok",
        "alice account.block bob ok",
    ]
    assert await ids(panel, operator, "action:account.block") == ["alice account.block bob ok"]
    assert await ids(panel, operator, "outcome:refused") == ["bob project.delete blog refused"]
    assert await ids(panel, operator, "target:blog") == ["bob project.delete blog refused"]
    assert await ids(panel, operator, "actor:alice account.un") == ["alice account.unblock bob ok"]
    assert await ids(panel, operator, "since:1h outcome:refused") == [
        "bob project.delete blog refused"
    ]
    later = datetime.now(UTC) + timedelta(hours=2)
    assert await ids(panel, operator, "since:1h", now=later) == []
    # A label with no account (the system, a deleted user) is matched as recorded.
    assert await ids(panel, operator, "actor:nobody") == []
    # LIKE's wildcards in free text are letters, not patterns.
    assert await ids(panel, operator, "%") == []

    first = await panel.admin.audit(operator, "", limit=2)
    rest = await panel.admin.audit(operator, "", before_id=first[-1].id, limit=200)
    assert [e.id for e in first + rest] == [e.id for e in await panel.admin.audit(operator, "")]
    assert len(first) == 2 and rest and rest[0].id < first[-1].id


async def test_users_may_not_read_the_audit_view(panel: Panel) -> None:
    _, _, bob = await people(panel)
    with pytest.raises(PermissionDenied):
        await panel.admin.audit(acting(bob), "")
    with pytest.raises(PermissionDenied):
        await panel.admin.audit(Actor.for_user(bob), "outcome:refused")


async def test_a_bad_word_is_refused_with_a_reason(panel: Panel) -> None:
    alice, _, _ = await people(panel)
    with pytest.raises(ValidationError, match="since: is a number"):
        await panel.admin.audit(Actor.for_staff(alice), "since:forever")
    with pytest.raises(ValidationError, match="An outcome is one of"):
        await panel.admin.audit(Actor.for_staff(alice), "outcome:maybe")
