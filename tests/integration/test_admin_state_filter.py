"""`:projects`'s `state:deploying` filter narrowed by the active deployments' index: the same
answer as the view's computed state, for each way a project can have an active deployment."""

from __future__ import annotations

from core.actor import Actor
from core.admin.read_models import ProjectFilter
from core.panel import Panel
from tests.actors import acting

PASSWORD = "correct horse battery"


async def test_deploying_is_the_latest_deploy_under_way_and_pages(panel: Panel) -> None:
    bob = await panel.accounts.sign_up("bob", "bob@example.org", PASSWORD)
    for name in ("alpha", "beta", "delta", "gamma", "omega"):
        await panel.projects.create(acting(bob), name)
    # (project, operation, state) in the order made: each project's last deploy decides.
    deployments = [
        ("alpha", "deploy", "queued"),
        ("beta", "deploy", "running"),
        ("gamma", "deploy", "queued"),  # an older deploy still queued...
        ("gamma", "deploy", "failed"),  # ...under a newer failed one: failed
        ("delta", "deploy", "running"),
        ("delta", "stop", "working"),  # an operation, not a deploy: not deploying
        ("omega", "deploy", "building"),
    ]
    async with panel.pool.acquire() as conn:
        for project, operation, state in deployments:
            await conn.execute(
                "INSERT INTO deployments (project_id, user_id, archive_name, state,"
                " project_name, operation)"
                " SELECT id, user_id, 'v1-app.zip', $2, name, $3 FROM projects WHERE name = $1",
                project,
                state,
                operation,
            )
    admin = Actor.system("admin-test")
    deploying = ProjectFilter(state="deploying")
    rows = await panel.admin.projects(admin, deploying)
    assert [(row.name, row.state) for row in rows] == [
        ("alpha", "deploying"),
        ("omega", "deploying"),
    ]
    after = await panel.admin.projects(admin, deploying, after="alpha", limit=1)
    assert [row.name for row in after] == ["omega"]
    assert [
        row.name for row in await panel.admin.projects(admin, deploying, username="nobody")
    ] == []
    failed = await panel.admin.projects(admin, ProjectFilter(state="failed"))
    assert [row.name for row in failed] == ["gamma"]
