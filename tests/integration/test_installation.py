"""The installation identity: made once per database, and how a database from before it adopts
its own unlabelled Docker objects (and nobody else's)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest

from core.panel import Panel
from core.settings import Settings
from tests.actors import acting

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def made(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Ids of containers a test makes by hand, removed afterwards."""
    ids: list[str] = []
    yield ids
    for container_id in ids:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(container_id, force=True)


async def test_the_identity_is_made_once_and_kept(deploy_panel: Panel) -> None:
    again = await Panel.open(deploy_panel.settings)
    try:
        assert again.installation == deploy_panel.installation
    finally:
        await again.close()
    identity = deploy_panel.installation
    assert not identity.legacy
    namespace = f"{deploy_panel.settings.instance}-{identity.id}"
    assert deploy_panel.deployer.namespace == namespace


async def test_a_database_from_before_identities_adopts_only_its_own_unlabelled_containers(
    deploy_panel: Panel,
    deploy_settings: Settings,
    base_image: str,
    docker_client: docker.DockerClient,
    made: list[str],
) -> None:
    panel = deploy_panel
    instance = deploy_settings.instance
    user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    project = await panel.projects.create(acting(user.id), "old")
    async with panel.pool.acquire() as conn:
        old = await conn.fetchval(
            "INSERT INTO deployments (project_id, user_id, archive_name, state, kind,"
            " finished_at, project_name) VALUES ($1, $2, 'v1-app.zip', 'superseded',"
            " 'dockerfile', now() - interval '1 day', $3) RETURNING id",
            project.id,
            user.id,
            project.name,
        )

    def unlabelled(project: str, deployment: int) -> str:
        """A container as a panel made it before identities: the instance label alone."""
        labels = {
            "ghst.instance": instance,
            "ghst.project": project,
            "ghst.deployment": str(deployment),
            "ghst.user": str(user.id),
        }
        container = docker_client.api.create_container(base_image, ["sleep", "60"], labels=labels)
        made.append(container["Id"])
        return str(container["Id"])

    ours = unlabelled("old", old)
    # Another pre-identity panel's, under the same instance name: a project this one never had.
    theirs = unlabelled("stranger", old)

    # A fresh database adopts nothing: its sweep leaves both alone.
    assert await panel.deployer.sweep(grace=0) == []
    assert {s.project for s in await panel.deployer.strays()} == {"old", "stranger"}

    # The same database as migration 0005 finds it when it already had deployments.
    async with panel.pool.acquire() as conn:
        await conn.execute("UPDATE installation SET legacy_last_deployment = $1", old)
    legacy = await Panel.open(deploy_settings)
    try:
        assert legacy.installation.legacy
        assert legacy.deployer.namespace == instance  # it keeps the names it gave
        assert await legacy.deployer.sweep(grace=0) == [old]
        remaining = {row["Id"] for row in docker_client.api.containers(all=True)}
        assert ours not in remaining and theirs in remaining
        (stray,) = await legacy.deployer.strays()
        assert (stray.project, stray.why) == (
            "stranger",
            "made before installations were labelled, for no deployment this panel knows",
        )
    finally:
        await legacy.close()
