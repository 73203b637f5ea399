"""Two panels on one dockerd never touch each other's things, and a lost live app is healed.

What happened: a bench ran `ghst serve` beside a live panel, with its own empty database and the
same instance name. Its worker's start-up sweep took the live panel's containers for leftovers
of deleted projects and removed them all: every site answered 502 while the live panel's
database still said "running".

Here panel A and panel B have separate databases (B on a second database of the test
PostgreSQL), separate nginx and Redis, and the SAME `GHST_INSTANCE`. Both deploy a project named
`site` (deployment #1 in both databases); A also runs a compose app with a named volume. Then B
does everything that removes Docker objects (its sweep, pruning old images, deleting its
project) and A's containers, images, networks and volumes are all still there, A's sites still
answer. A container removed by hand from a live deployment is reported, then healed.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import docker
import pytest
from textual.widgets import Static

from core.db.migrations import migrate
from core.panel import Panel
from core.projects.service import Project
from core.routing.nginx import NginxProcess, NginxRouter
from core.settings import Settings
from tests.actors import acting, as_user
from tests.conftest import reset_state, with_settings
from tests.fixtures_deploy import Deploying, counter_app, eventually, page_app, running_worker
from tests.fixtures_nginx import TEST_DOMAIN, http_request
from tests.integration.test_worker_process import GHST, worker_env
from tests.services import PostgresServer, RedisServer, free_port, temp_root
from tests.tui.helpers import REMOTE_ADDR, SIZE, settle
from tui.app import GhstApp
from tui.screens.project import ProjectScreen
from tui.visitor import Visitor

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def deploy_settings(deploy_settings: Settings) -> Settings:
    # The tests look for lost containers themselves (check_live), when they choose to.
    return with_settings(deploy_settings, live_check_seconds=3600.0)


@dataclass(frozen=True)
class Owned:
    """Ids (names for volumes) of the Docker objects carrying one installation's label."""

    containers: frozenset[str]
    images: frozenset[str]
    networks: frozenset[str]
    volumes: frozenset[str]


def owned(client: docker.DockerClient, panel: Panel) -> Owned:
    label = {"label": f"ghst.installation={panel.installation.id}"}
    api = client.api
    return Owned(
        frozenset(row["Id"] for row in api.containers(all=True, filters=label)),
        frozenset(row["Id"] for row in api.images(filters=label)),
        frozenset(row["Id"] for row in api.networks(filters=label)),
        frozenset(row["Name"] for row in api.volumes(filters=label).get("Volumes") or []),
    )


def shop_files(base_image: str) -> dict[str, str | bytes]:
    """A compose app keeping a counter in a named volume, serving it on port 8000."""
    return counter_app(base_image, "shop")


async def deployed(side: Deploying, project: str, files: dict[str, str | bytes]) -> int:
    done = await side.deploy_files(project, files)
    assert done.state == "running", await side.log(done)
    return done.id


@pytest.fixture
async def second_panel(
    deploy_settings: Settings, postgres_server: PostgresServer, redis_server: RedisServer
) -> AsyncIterator[tuple[Panel, NginxRouter]]:
    """Panel B: its own database, Redis database, data folder and nginx; A's instance name."""
    database = f"ghst_b_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_server.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    url = postgres_server.dsn(database)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    root = temp_root("ghst-panel-b-")
    router = NginxRouter(
        prefix=root / "nginx",
        domain=TEST_DOMAIN,
        port=free_port(),
        body_limit_mb=deploy_settings.nginx_body_limit_mb,
    )
    nginx = NginxProcess(router)
    await nginx.start()
    settings = with_settings(
        deploy_settings,
        database_url=url,
        redis_url=redis_server.url(1),
        data_dir=root / "data",
        nginx_prefix=str(router.prefix),
        nginx_port=router.port,
        keep_images=1,
    )
    await reset_state(settings)  # its Redis database
    panel = await Panel.open(settings)
    try:
        yield panel, router
    finally:
        await panel.engine.remove_labelled({})
        await panel.close()
        await nginx.stop()
        shutil.rmtree(root, ignore_errors=True)
        admin = await asyncpg.connect(postgres_server.dsn())
        try:
            await admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
        finally:
            await admin.close()


async def test_a_second_panel_with_the_same_instance_name_never_touches_the_first_ones_things(
    deploying: Deploying,
    second_panel: tuple[Panel, NginxRouter],
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    a = deploying
    panel_b, router_b = second_panel
    assert panel_b.settings.instance == a.panel.settings.instance
    assert panel_b.installation.id != a.panel.installation.id
    user_b = await panel_b.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    b = Deploying(panel_b, router_b, user_b.id)

    # A: `site` (#1, a Dockerfile app) and `shop` (#2, compose with a named volume).
    await a.panel.projects.create(acting(a.user_id), "site")
    await a.panel.projects.create(acting(a.user_id), "shop")
    assert await deployed(a, "site", page_app(base_image, "site of A")) == 1
    await deployed(a, "shop", shop_files(base_image))
    before = owned(docker_client, a.panel)
    assert before.containers and before.images and before.networks and before.volumes

    async with running_worker(panel_b):
        # B: the same project name, the same deployment number, the same instance name.
        await panel_b.projects.create(acting(b.user_id), "site")
        first_b = await deployed(b, "site", page_app(base_image, "site of B"))
        assert first_b == 1
        assert (await http_request(router_b, "site")).text.strip() == "site of B"
        assert (await http_request(a.router, "site")).text.strip() == "site of A"
        # B's tenant has A's tenant's user id and project name: A's image is still not theirs.
        a_image = docker_client.api.inspect_image(f"{a.panel.deployer.namespace}/site:1")["Id"]
        await b.upload("site", {"Dockerfile": f"FROM {a_image}\n"})
        stolen = await b.settle(await panel_b.deployments.deploy(as_user(b.user_id), "site"))
        assert stolen.state == "failed"
        assert "another project's image" in (stolen.error or ""), stolen.error
        assert (await http_request(router_b, "site")).text.strip() == "site of B"
        # A second version: B retires #1 and prunes its older images (it keeps one).
        await deployed(b, "site", page_app(base_image, "site of B, v2"))
        assert (await http_request(router_b, "site")).text.strip() == "site of B, v2"

    # B's sweep sees A's containers under the instance label: deployments its database does
    # not know (A's #2). The bench's sweep removed exactly those.
    assert await panel_b.deployer.sweep(grace=0) == []
    strays = await panel_b.deployer.strays()
    assert {s.project for s in strays} == {"site", "shop"}
    assert all(s.why.startswith("made by another panel") for s in strays)

    # B deletes its project `site` (a job for B's worker): A's project of that name keeps
    # everything.
    async with running_worker(panel_b):
        await panel_b.deployments.delete_project(as_user(b.user_id), "site", "site")
    # Only B's build network stays: every project of B builds on it (core/runtime/firewall.py).
    build_network = docker_client.api.inspect_network(f"{panel_b.deployer.namespace}-build")["Id"]
    assert owned(docker_client, panel_b) == Owned(
        frozenset(), frozenset(), frozenset({build_network}), frozenset()
    )
    # And B's last clean-up, the one a test fixture (or an operator) runs for everything.
    await panel_b.engine.remove_labelled({})

    assert owned(docker_client, a.panel) == before
    assert (await http_request(a.router, "site")).text.strip() == "site of A"
    assert (await http_request(a.router, "shop")).text.strip() == "shop 1"
    # A's sweep finds nothing to remove either, and nobody else's container to report.
    assert await a.panel.deployer.sweep(grace=0) == []


async def test_a_container_of_a_deployment_the_database_does_not_know_is_left_and_reported(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "site")
    live = await deployed(deploying, "site", page_app(base_image, "site"))
    image = f"{panel.deployer.namespace}/site:{live}"
    # What a database restored from an older backup would not know: deployment #999.
    unknown = await panel.engine.run(
        name=f"{panel.deployer.namespace}-site-999",
        image=image,
        host_port=free_port(),
        app_port=8000,
        env={},
        labels={"ghst.project": "site", "ghst.deployment": "999", "ghst.user": str(user)},
        limits=panel.deployer.app_limits(),
        network=f"{panel.deployer.namespace}-site",
    )
    assert await panel.deployer.sweep(grace=0) == []
    assert docker_client.api.inspect_container(unknown)["State"]["Running"]
    (stray,) = await panel.deployer.strays()
    assert (stray.project, stray.deployment) == ("site", "999")
    assert stray.why == "its deployment is not in this panel's database"
    # The operator sees it with `ghst strays`.
    process = await asyncio.create_subprocess_exec(
        str(GHST),
        "strays",
        env=worker_env(panel.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    listing = out.decode()
    assert f"installation {panel.installation.id}" in listing
    (line,) = [row for row in listing.splitlines() if row.startswith(stray.name)]
    assert line.split()[1:4] == ["site", "999", "running"]
    assert line.endswith("its deployment is not in this panel's database")


def remove_by_hand(client: docker.DockerClient, panel: Panel, deployment: int) -> None:
    """What an operator's `docker rm -f`, another program or a lost dockerd does."""
    labels = [f"ghst.deployment={deployment}", f"ghst.installation={panel.installation.id}"]
    for row in client.api.containers(all=True, filters={"label": labels}):
        client.api.remove_container(row["Id"], force=True)


async def screen_status(panel: Panel, user: int, project: str) -> str:
    """The status line of the project's screen, as its owner sees it."""
    owner = await panel.accounts.get(user)
    session = await panel.sessions.open(user, "password", REMOTE_ADDR)
    app = GhstApp(panel, Visitor(REMOTE_ADDR, owner.username, user=owner, session=session))
    async with app.run_test(size=SIZE) as pilot:
        screen = ProjectScreen(project)
        await app.push_screen(screen)
        await settle(pilot)
        deadline = time.monotonic() + 10
        while screen.status is None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        return str(screen.query_one("#status", Static).render())


async def test_a_live_deployment_whose_containers_were_removed_by_hand_is_reported_then_healed(
    deploy_panel: Panel,
    nginx_router: NginxRouter,
    base_image: str,
    docker_client: docker.DockerClient,
) -> None:
    panel = deploy_panel
    user = (await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")).id
    side = Deploying(panel, nginx_router, user)
    await panel.projects.create(acting(user), "site")
    await panel.projects.create(acting(user), "shop")
    async with running_worker(panel):
        site = await deployed(side, "site", page_app(base_image, "site"))
        shop = await deployed(side, "shop", shop_files(base_image))
    assert (await http_request(nginx_router, "shop")).text.strip() == "shop 1"

    # Someone removes the live containers behind the panel's back: the sites answer 502.
    remove_by_hand(docker_client, panel, site)
    remove_by_hand(docker_client, panel, shop)
    assert (await http_request(nginx_router, "site")).status == 502

    # A worker's look (called here, with no worker running) notices and queues a heal for each.
    missing = {m.deployment.id: m for m in await panel.deployer.check_live()}
    assert set(missing) == {site, shop}
    status = await panel.deployments.status(as_user(user), "site")
    assert status.live is not None and status.live.id == site
    assert status.live.missing_since is not None
    assert status.latest is not None and status.latest.reason == "heal"
    assert status.latest.source_id == site
    # Noticed once: looking again queues nothing more.
    assert await panel.deployer.check_live() == []
    # Its owner reads it on the project's screen.
    line = await screen_status(panel, user, "site")
    assert line.startswith(f"◌ deploying  #{status.latest.id} v1-app.tar queued"), line
    assert f"the containers of #{site} were removed outside the panel" in line, line
    assert line.endswith(": the panel starts it again"), line

    async with running_worker(panel):
        for name, lost in (("site", site), ("shop", shop)):
            heal_id = missing[lost].heal_id
            assert heal_id is not None
            heal = await side.settle(await panel.deployments.get(as_user(user), name, heal_id))
            assert heal.state == "running", await side.log(heal)
            assert "were gone" in await side.log(heal)
            status = await panel.deployments.status(as_user(user), name)
            assert status.live is not None and status.live.id == heal_id
            assert status.live.missing_since is None
    assert (await http_request(nginx_router, "site")).text.strip() == "site"
    # The same image and the same volume: the counter goes on.
    assert (await http_request(nginx_router, "shop")).text.strip() == "shop 2"
    line = await screen_status(panel, user, "site")
    assert f"(started again by the panel: the containers of #{site} had been removed" in line

    # A worker also looks by itself, every GHST_LIVE_CHECK_SECONDS.
    healed = missing[site].heal_id
    assert healed is not None
    async with running_worker(panel, live_check_seconds=0.2):
        remove_by_hand(docker_client, panel, healed)

        async def site_healed_again() -> bool:
            now = await panel.deployments.status(as_user(user), "site")
            return (
                now.live is not None
                and now.live.source_id == healed
                and (now.live.reason == "heal")
            )

        await eventually(site_healed_again)
    assert (await http_request(nginx_router, "site")).text.strip() == "site"


async def test_a_project_being_deleted_is_not_healed_behind_its_owners_back(
    deploying: Deploying,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    panel, user = deploying.panel, deploying.user_id
    await panel.projects.create(acting(user), "site")
    await deployed(deploying, "site", page_app(base_image, "site"))
    remove_project = panel.deployer.remove_project
    looked: list[list[int]] = []

    async def remove_then_look(project: Project) -> None:
        # A worker's look lands between the removal of the containers and of the project.
        await remove_project(project)
        looked.append([m.deployment.id for m in await panel.deployer.check_live()])

    monkeypatch.setattr(panel.deployer, "remove_project", remove_then_look)
    await panel.deployments.delete_project(as_user(user), "site", "site")
    assert looked == [[]]
    mine = {"label": f"ghst.installation={panel.installation.id}"}
    assert docker_client.api.containers(all=True, filters=mine) == []
