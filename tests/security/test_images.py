"""Issue 9 point 2: a tenant builds on (or runs) another tenant's image; remote ADD; public ids.

Tenant A ("alice") has a live project serving a secret page. Tenant B ("bob") uploads archives
whose Dockerfile or compose file reaches for A's image every way dockerd allows (a tag, an image
id or a short one, through ARG and build args, `${X:-default}`, `COPY --from`, `RUN --mount`, an
ONBUILD trigger of a base image, compose `image:`, a line continuation after `# escape=`...)
and deploys them through the panel, with the real dockerd and nginx. Each attempt must fail with
a message saying why, B's site must never serve A's page, and nothing of B's attempt may be left
(images, containers). What a tenant may do still works: FROM a base image, FROM the project's
own earlier image, multi-stage builds with stage names, compose build args.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import docker
import pytest

from core.deploy.service import Deployment
from tests.actors import acting
from tests.fixtures_deploy import Deploying, free_port, page_app
from tests.fixtures_nginx import http_request

pytestmark = pytest.mark.timeout(180)

SECRET = "alice's private page 7d1c"
SERVE = 'EXPOSE 8000\nCMD ["httpd", "-f", "-p", "8000", "-h", "/www"]\n'
ANOTHER_PROJECT = "another project's image"


@dataclass
class Tenants:
    alice: Deploying
    bob: Deploying
    image: str  # alice's live image, by tag
    image_id: str
    parent_id: str  # the step of alice's build before the panel's labels: no label, no name

    def fill(self, text: str, base_image: str) -> str:
        return (
            text.replace("{image}", self.image)
            .replace("{id}", self.image_id)
            .replace("{short}", self.image_id.removeprefix("sha256:")[:12])
            .replace("{parent}", self.parent_id)
            .replace("{base}", base_image)
        )


@pytest.fixture
async def tenants(
    deploying: Deploying, base_image: str, docker_client: docker.DockerClient
) -> Tenants:
    panel = deploying.panel
    await panel.projects.create(acting(deploying.user_id), "alpha")
    live = await deploying.deploy_files("alpha", page_app(base_image, SECRET))
    assert live.state == "running", await deploying.log(live)
    assert live.image is not None
    bob = await panel.accounts.sign_up("bob", "bob@example.com", "correct horse battery")
    tenant_b = Deploying(panel, deploying.router, bob.id)
    await panel.projects.create(acting(bob.id), "bravo")
    image = docker_client.images.get(live.image)
    return Tenants(deploying, tenant_b, live.image, image.id, image.attrs["Parent"])


def leftovers(client: docker.DockerClient, instance: str, project: str) -> list[str]:
    labels = [f"ghst.instance={instance}", f"ghst.project={project}"]
    images = client.api.images(all=True, filters={"label": labels})
    containers = client.api.containers(all=True, filters={"label": labels})
    return [row["Id"] for row in images] + [row["Id"] for row in containers]


async def assert_refused(
    tenants: Tenants, docker_client: docker.DockerClient, files: dict[str, str], *messages: str
) -> Deployment:
    bob = tenants.bob
    done = await bob.deploy_files("bravo", files)
    log = await bob.log(done)
    assert done.state == "failed", log
    for message in messages:
        assert message in done.error, done.error
    assert SECRET not in log
    page = await http_request(bob.router, "bravo")
    assert page.status == 404 and SECRET not in page.text
    instance = bob.panel.settings.instance
    assert leftovers(docker_client, instance, "bravo") == []
    # A's site is untouched.
    assert (await http_request(bob.router, "alpha")).text.strip() == SECRET
    return done


DOCKERFILE_ATTACKS = {
    "from-tag": "FROM {image}\n" + SERVE,
    "from-arg-default": "ARG BASE={image}\nFROM $BASE\n" + SERVE,
    "from-default-expansion": "FROM ${NOPE:-{image}}\n" + SERVE,
    "from-alternative-expansion": "ARG SET=1\nFROM ${SET:+{image}}\n" + SERVE,
    "from-image-id": "FROM {id}\n" + SERVE,
    "from-short-id": "FROM {short}\n" + SERVE,
    "from-escape-continuation": "# escape=`\nfrom `\n  {image}\n" + SERVE,
    "from-continuation-comment": "FROM \\\n# a comment in the middle\n  {image}\n" + SERVE,
    "from-unlabelled-step": "FROM {parent}\n" + SERVE,
    "from-platform": "FROM --platform=linux/amd64 {image} AS stolen\n" + SERVE,
    "stage-then-from-tag": "FROM {base} AS first\nFROM {image}\n" + SERVE,
    "copy-from-tag": "FROM {base}\nCOPY --from={image} /www/index.html /www/index.html\n" + SERVE,
    "copy-from-id": "FROM {base}\nCOPY --from={id} /www/index.html /www/index.html\n" + SERVE,
    "copy-from-quoted": 'FROM {base}\nCOPY --fr"om"={short} /www /www\n' + SERVE,
    "onbuild-in-own-file": "FROM {base}\nONBUILD COPY --from={image} /www /www\n" + SERVE,
}


@pytest.mark.parametrize("attack", sorted(DOCKERFILE_ATTACKS))
async def test_a_dockerfile_cannot_use_another_projects_image(
    tenants: Tenants, base_image: str, docker_client: docker.DockerClient, attack: str
) -> None:
    files = {"Dockerfile": tenants.fill(DOCKERFILE_ATTACKS[attack], base_image)}
    why = "without a name" if attack == "from-unlabelled-step" else ANOTHER_PROJECT
    done = await assert_refused(tenants, docker_client, files, why)
    assert "Build FROM a base image" in done.error


async def test_the_operator_chooses_the_base_images(
    tenants: Tenants,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = tenants.bob.panel.deployer.policy
    monkeypatch.setattr(policy, "_patterns", ("python:*", "node:*"))
    files = page_app(base_image, "bob")
    await assert_refused(tenants, docker_client, files, "not one of the base images this server")
    repository = base_image.rsplit(":", 1)[0]
    monkeypatch.setattr(policy, "_patterns", ("python:*", f"{repository}:*"))
    done = await tenants.bob.deploy_files("bravo", files)
    assert done.state == "running", await tenants.bob.log(done)
    # A pattern never makes another project's image a base image.
    monkeypatch.setattr(policy, "_patterns", ("*",))
    files = {"Dockerfile": tenants.fill("FROM {image}\n" + SERVE, base_image)}
    refused = await tenants.bob.deploy_files("bravo", files)
    assert refused.state == "failed" and ANOTHER_PROJECT in refused.error


async def test_the_check_after_the_build_catches_what_the_check_before_missed(
    tenants: Tenants,
    base_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the Dockerfile check ever fooled, the built image's own history still gives the
    other project's image away: the deployment fails and the image is removed."""
    policy = tenants.bob.panel.deployer.policy
    monkeypatch.setattr(policy, "check_attrs", lambda *args: None)  # a hole in the first check
    dockerfile = tenants.fill("FROM {image}\nRUN echo more > /www/more.html\n", base_image)
    files = {"Dockerfile": dockerfile + SERVE}
    done = await assert_refused(tenants, docker_client, files, ANOTHER_PROJECT)
    assert "The build reused a step" in done.error


async def test_run_mount_of_another_image_is_refused(
    tenants: Tenants, base_image: str, docker_client: docker.DockerClient
) -> None:
    dockerfile = (
        "FROM {base}\n"
        "RUN --mount=type=bind,from={image},source=/www,target=/stolen cp /stolen/* /www/\n"
    )
    files = {"Dockerfile": tenants.fill(dockerfile + SERVE, base_image)}
    await assert_refused(tenants, docker_client, files, "RUN --mount", "mount another image")


@pytest.fixture
def onbuild_base(
    tenants: Tenants, base_image: str, docker_client: docker.DockerClient
) -> Iterator[str]:
    """A base image the operator installed (no panel label): its ONBUILD trigger copies from
    alice's image into whatever builds FROM it."""
    tag = f"ghst-test/onbuild:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM {base_image}\nONBUILD COPY --from={tenants.image} /www /www\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


async def test_an_onbuild_trigger_of_a_base_image_cannot_copy_another_projects_image(
    tenants: Tenants, onbuild_base: str, docker_client: docker.DockerClient
) -> None:
    files = {"Dockerfile": f"FROM {onbuild_base}\n" + SERVE}
    await assert_refused(tenants, docker_client, files, "ONBUILD trigger", ANOTHER_PROJECT)


COMPOSE_ATTACKS = {
    "image-tag": "services:\n  web:\n    image: {image}\n    ports: ['8000']\n",
    "image-id": "services:\n  web:\n    image: '{id}'\n    ports: ['8000']\n",
    "image-short-id": "services:\n  web:\n    image: '{short}'\n    ports: ['8000']\n",
    "image-interpolated": "services:\n  web:\n    image: ${NOPE:-{image}}\n    ports: ['8000']\n",
    "build-from": "services:\n  web:\n    build: ./web\n    ports: ['8000']\n",
    "build-arg": (
        "services:\n  web:\n    build:\n      context: ./web\n"
        "      args: {BASE: '{image}'}\n    ports: ['8000']\n"
    ),
}
COMPOSE_DOCKERFILES = {
    "build-from": "FROM {image}\n" + SERVE,
    "build-arg": "ARG BASE={base}\nFROM ${BASE}\n" + SERVE,
}


@pytest.mark.parametrize("attack", sorted(COMPOSE_ATTACKS))
async def test_a_compose_app_cannot_use_another_projects_image(
    tenants: Tenants, base_image: str, docker_client: docker.DockerClient, attack: str
) -> None:
    files = {"compose.yaml": tenants.fill(COMPOSE_ATTACKS[attack], base_image)}
    if attack in COMPOSE_DOCKERFILES:
        files["web/Dockerfile"] = tenants.fill(COMPOSE_DOCKERFILES[attack], base_image)
    done = await assert_refused(tenants, docker_client, files, ANOTHER_PROJECT)
    if attack.startswith("image"):
        assert "Service 'web'" in done.error


async def test_a_build_does_not_reuse_another_projects_cached_steps(
    tenants: Tenants, base_image: str, docker_client: docker.DockerClient
) -> None:
    """Same base, same RUN line: the classic builder's cache would hand bob alice's layer
    (say, a secret a RUN step fetched). Bob's build runs the step itself instead."""
    dockerfile = (
        f"FROM {base_image}\nRUN cat /proc/sys/kernel/random/uuid > /www/cached.txt\n"
        "COPY index.html /www/index.html\n" + SERVE
    )
    second = await tenants.alice.deploy_files(
        "alpha", {"Dockerfile": dockerfile, "index.html": SECRET}
    )
    assert second.state == "running", await tenants.alice.log(second)
    done = await tenants.bob.deploy_files("bravo", {"Dockerfile": dockerfile, "index.html": "bob"})
    log = await tenants.bob.log(done)
    assert done.state == "running", log
    assert "Using cache" not in log
    theirs = await http_request(tenants.alice.router, "alpha", "/cached.txt")
    ours = await http_request(tenants.bob.router, "bravo", "/cached.txt")
    assert theirs.status == ours.status == 200
    assert theirs.text != ours.text


class UrlTrap:
    """An HTTP server on loopback that counts the requests it gets (a host-side service)."""

    def __init__(self) -> None:
        self.hits = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret")
        await writer.drain()
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def url_trap() -> AsyncIterator[UrlTrap]:
    trap = UrlTrap()
    trap.server = await asyncio.start_server(trap._serve, "127.0.0.1", 0)
    yield trap
    trap.server.close()
    await trap.server.wait_closed()


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM {base}\nADD http://127.0.0.1:{port}/meta /www/index.html\n",
        "FROM {base}\nARG U=http://127.0.0.1:{port}/meta\nADD $U /www/index.html\n",
        'FROM {base}\nENV H=127.0.0.1:{port}\nADD "http://${H}/meta" /www/index.html\n',
        'FROM {base}\nADD ["https://127.0.0.1:{port}/meta", "/www/index.html"]\n',
    ],
    ids=["literal", "arg", "env-quoted", "json"],
)
async def test_remote_add_is_refused(
    tenants: Tenants,
    base_image: str,
    docker_client: docker.DockerClient,
    url_trap: UrlTrap,
    dockerfile: str,
) -> None:
    text = tenants.fill(dockerfile, base_image).replace("{port}", str(url_trap.port))
    await assert_refused(
        tenants, docker_client, {"Dockerfile": text + SERVE}, "ADD from a URL", "network"
    )
    assert url_trap.hits == 0


async def test_remote_add_works_where_the_operator_allows_it(
    tenants: Tenants, base_image: str, url_trap: UrlTrap, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenants.bob.panel.deployer.policy, "_allow_remote_add", True)
    dockerfile = f"FROM {base_image}\nADD http://127.0.0.1:{url_trap.port}/meta /www/index.html\n"
    done = await tenants.bob.deploy_files("bravo", {"Dockerfile": dockerfile + SERVE})
    assert done.state == "running", await tenants.bob.log(done)
    assert url_trap.hits == 1
    assert (await http_request(tenants.bob.router, "bravo")).text == "secret"


ALLOWED = {
    "base": "FROM {base}\nCOPY index.html /www/index.html\n",
    "arg-base": "ARG BASE={base}\nFROM ${BASE}\nCOPY index.html /www/index.html\n",
    "multi-stage": (
        "FROM {base} AS Build\nCOPY index.html /built.html\n"
        "FROM build AS middle\nRUN cp /built.html /middle.html\n"
        "FROM {base}\nCOPY --from=BUILD /built.html /www/index.html\n"
        "COPY --from=1 /middle.html /www/middle.html\n"
    ),
    "escape-directive": "# escape=`\nFROM `\n  {base}\nCOPY index.html `\n  /www/index.html\n",
    "add-local-file": (
        'FROM {base}\nARG PAGE=index\nENV DIR=/www\nADD "${PAGE}.html" $DIR/index.html\n'
    ),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
async def test_what_a_tenant_may_build_still_works(
    tenants: Tenants, base_image: str, case: str
) -> None:
    files = {"Dockerfile": tenants.fill(ALLOWED[case], base_image) + SERVE, "index.html": "bob"}
    done = await tenants.bob.deploy_files("bravo", files)
    assert done.state == "running", await tenants.bob.log(done)
    assert (await http_request(tenants.bob.router, "bravo")).text.strip() == "bob"


async def test_copy_of_the_whole_context_does_not_get_the_panels_pinned_dockerfile(
    tenants: Tenants, base_image: str
) -> None:
    # The pinned copy lies in the build context; a COPY of everything must not carry it along.
    files = {"Dockerfile": f"FROM {base_image}\nCOPY . /www/\n" + SERVE, "index.html": "bob"}
    done = await tenants.bob.deploy_files("bravo", files)
    assert done.state == "running", await tenants.bob.log(done)
    assert (await http_request(tenants.bob.router, "bravo")).text.strip() == "bob"
    assert (await http_request(tenants.bob.router, "bravo", "/Dockerfile")).status == 200
    pinned = await http_request(tenants.bob.router, "bravo", "/.ghst-pinned.Dockerfile")
    assert pinned.status == 404


async def test_a_project_builds_on_its_own_earlier_image_and_runs_it_in_compose(
    tenants: Tenants, base_image: str
) -> None:
    bob = tenants.bob
    first = await bob.deploy_files("bravo", page_app(base_image, "bob v1"))
    assert first.state == "running", await bob.log(first)
    assert first.image is not None
    files = {"Dockerfile": f"FROM {first.image}\nRUN echo v2 > /www/v2.html\n" + SERVE}
    second = await bob.deploy_files("bravo", files)
    assert second.state == "running", await bob.log(second)
    assert (await http_request(bob.router, "bravo")).text.strip() == "bob v1"
    assert (await http_request(bob.router, "bravo", "/v2.html")).text.strip() == "v2"
    compose = {
        "compose.yaml": (
            f"services:\n  web:\n    image: {first.image}\n    ports: ['8000']\n"
            "    command: ['httpd', '-f', '-p', '8000', '-h', '/www']\n"
        )
    }
    third = await bob.deploy_files("bravo", compose)
    assert third.state == "running", await bob.log(third)
    assert (await http_request(bob.router, "bravo")).text.strip() == "bob v1"


async def test_a_compose_build_arg_picks_a_base_image(tenants: Tenants, base_image: str) -> None:
    files = {
        "compose.yaml": (
            "services:\n  web:\n    build:\n      context: ./web\n"
            f"      args: {{BASE: '{base_image}'}}\n    ports: ['8000']\n"
        ),
        "web/Dockerfile": "ARG BASE=nothing-here\nFROM $BASE\nCOPY index.html /www/\n" + SERVE,
        "web/index.html": "bob composed",
    }
    done = await tenants.bob.deploy_files("bravo", files)
    assert done.state == "running", await tenants.bob.log(done)
    assert (await http_request(tenants.bob.router, "bravo")).text.strip() == "bob composed"


async def test_a_public_response_never_shows_a_deployment_id(tenants: Tenants) -> None:
    router = tenants.alice.router
    live = await http_request(router, "alpha")
    unknown = await http_request(router, "nobody-here")
    missing = await http_request(router, "alpha", "/no-such-page")
    assert (live.status, unknown.status, missing.status) == (200, 404, 404)
    for response in (live, unknown, missing):
        assert "x-ghst-deployment" not in response.headers
    # Only the panel's own probe, with the prefix's secret, learns it.
    probe_headers = await asyncio.to_thread(router.probe_headers)
    probed = await http_request(router, "alpha", headers=probe_headers)
    assert probed.headers.get("x-ghst-deployment", "").isdigit()
    wrong = await http_request(router, "alpha", headers={"X-Ghst-Probe": "0" * 64})
    assert "x-ghst-deployment" not in wrong.headers
    await router.route("gamma", free_port(), 99)
    down = await http_request(router, "gamma")
    assert down.status == 502 and "x-ghst-deployment" not in down.headers
    await router.route_stopped("alpha")
    stopped = await http_request(router, "alpha")
    assert stopped.status == 503 and "x-ghst-deployment" not in stopped.headers
