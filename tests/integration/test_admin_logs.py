"""core/admin/logs.py against the real PostgreSQL: admins and operators read any account's
build log (the deployments service alone would show an operator nothing), users and their
tokens read none through it, and it offers nothing but reads."""

from __future__ import annotations

import pytest

from core.actor import Actor
from core.admin.logs import StaffLogs
from core.errors import NotFoundError, PermissionDenied
from core.panel import Panel
from tests.actors import SYSTEM, acting
from tests.tui.test_deployments import insert_deployment

PASSWORD = "correct horse battery"


async def test_staff_read_any_build_log_and_tenants_read_none_through_it(panel: Panel) -> None:
    await panel.accounts.sign_up("olga", "olga@example.com", PASSWORD)
    operator = Actor.for_staff(await panel.accounts.set_role(SYSTEM, "olga", "operator"))
    bob_user = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    project = await panel.projects.create(acting(bob_user), "shop")
    built = await insert_deployment(
        panel, project, "v1-app.zip", "failed", log="Step 1/1 : FROM scratch\n"
    )
    # The deployments service alone: an operator owns nothing, so sees nothing.
    with pytest.raises(NotFoundError):
        await panel.deployments.build_log(operator, "shop", built)

    logs = panel.admin.logs
    assert await logs.build_log(operator, "shop", built) == ("Step 1/1 : FROM scratch\n", 24)
    assert (await logs.get(operator, "shop", built)).state == "failed"
    assert (await logs.status(operator, "shop")).state == "failed"

    mallory = acting(await panel.accounts.sign_up("mallory", "m@example.org", PASSWORD))
    token = Actor.for_token(
        bob_user, token_id=1, prefix="gh_x", scopes=frozenset({"read", "logs", "admin"})
    )
    for outsider in (mallory, acting(bob_user), token):
        with pytest.raises(PermissionDenied):
            await logs.build_log(outsider, "shop", built)
        with pytest.raises(PermissionDenied):
            await logs.status(outsider, "shop")
        with pytest.raises(PermissionDenied):
            async for _ in logs.runtime_logs(outsider, "shop"):
                pass
    # Reads only: nothing that queues, stops or deletes.
    assert {name for name in vars(StaffLogs) if not name.startswith("_")} == {
        "get", "status", "build_log", "runtime_logs",
    }  # fmt: skip
