"""The admin app's `:audit` and `:plans` cores against the real PostgreSQL: every account's
entries narrowed in SQL by actor, action, target, outcome, time and free text, paged on the id
(staff only); plan versions added and codes retired by admins only, projects keeping theirs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.actor import Actor
from core.audit.entries import Target
from core.billing.plans import PlanSpec
from core.errors import NotFoundError, PermissionDenied, ValidationError
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


TINY = PlanSpec("tiny", "Tiny", 0, 250, 256, 256, 1)


async def test_an_admin_adds_a_version_and_retires_a_code_projects_keep_theirs(
    panel: Panel,
) -> None:
    alice, olga, _ = await people(panel)
    admin = Actor.for_staff(alice).acting_from("admin")
    carol = await panel.accounts.sign_up("carol", "carol@example.com", "correct horse battery")
    first = await panel.admin.create_plan(admin, TINY)
    second = await panel.admin.create_plan(admin, replace(TINY, name="Tiny 2", ram_mb=512))
    assert (first.version, second.version, second.ram_mb) == (1, 2, 512)
    await panel.subscriptions.create_project(acting(carol), "notes", plan_code="tiny")

    assert await panel.admin.retire_plan(admin, "tiny") == 2
    assert "tiny" not in [plan.code for plan in await panel.plans.list()]
    with pytest.raises(NotFoundError):
        await panel.subscriptions.create_project(acting(carol), "other", plan_code="tiny")
    kept = await panel.admin.project(admin, "notes")
    assert kept.plan == "tiny v2"
    rows = {(p.plan.code, p.plan.version): p for p in await panel.admin.plans(admin)}
    assert rows["tiny", 2].plan.retired and rows["tiny", 2].projects == 1
    assert rows["tiny", 1].plan.retired and rows["tiny", 2].plan.ram_mb == 512

    with pytest.raises(ValidationError, match="retired already"):
        await panel.admin.retire_plan(admin, "tiny")
    with pytest.raises(ValidationError, match="free plan cannot be retired"):
        await panel.admin.retire_plan(admin, "free")
    with pytest.raises(NotFoundError):
        await panel.admin.retire_plan(admin, "nothing")
    # A new version of a retired code offers it again (a new row; the old ones stay retired).
    third = await panel.admin.create_plan(admin, TINY)
    assert third.version == 3 and not third.retired

    actions = await ids(panel, Actor.for_staff(olga), "target:tiny")
    assert actions == [
        "alice plan.create tiny ok",
        "alice plan.retire tiny ok",
        "alice plan.create tiny ok",
        "alice plan.create tiny ok",
    ]


async def test_operators_and_users_change_no_plan(panel: Panel) -> None:
    _, olga, bob = await people(panel)
    for actor in (Actor.for_staff(olga), acting(bob)):
        with pytest.raises(PermissionDenied):
            await panel.admin.create_plan(actor, TINY)
        with pytest.raises(PermissionDenied):
            await panel.admin.retire_plan(actor, "host-0")
    assert "tiny" not in [p.code for p in await panel.plans.list(with_old=True)]
    assert "host-0" in [p.code for p in await panel.plans.list()]
