"""The whole path a user takes: `scp app.tar panel:project/`, deploy, and the app answers through
nginx at `<project>.<domain>`. OpenSSH's scp, the panel's SSH server, dockerd and nginx, all real."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.panel import Panel
from tests.actors import as_user
from tests.e2e.helpers import running_server
from tests.e2e.transfers import account, remote, run, scp_command, write
from tests.fixtures_deploy import Deploying, app_tar, page_app, running_worker
from tests.fixtures_nginx import NginxRouter, http_request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def compose_files(base_image: str, page: str) -> dict[str, str | bytes]:
    return {
        "compose.yaml": (
            "services:\n"
            "  web:\n"
            "    build: ./web\n"
            "    ports: ['8000']\n"
            "    depends_on: [cache]\n"
            "  cache:\n"
            f"    image: {base_image}\n"
            "    command: ['sleep', '3600']\n"
        ),
        **{f"web/{name}": content for name, content in page_app(base_image, page).items()},
    }


@pytest.mark.parametrize("kind", ["dockerfile", "compose"])
async def test_an_archive_pushed_with_scp_is_deployed_and_answers_through_nginx(
    deploy_panel: Panel, nginx_router: NginxRouter, base_image: str, tmp_path: Path, kind: str
) -> None:
    panel = deploy_panel
    alice = await account(panel, tmp_path, "alice", projects=("pushed",))
    page = f"pushed with scp ({kind})"
    files = page_app(base_image, page) if kind == "dockerfile" else compose_files(base_image, page)
    archive = write(tmp_path / "app.tar", app_tar(files))
    async with running_server(panel) as server:
        result = await run(scp_command(server, alice, str(archive), remote(alice, "pushed/")))
    assert result.status == 0, result.stderr

    deploying = Deploying(panel, nginx_router, alice.id)
    async with running_worker(panel):
        queued = await panel.deployments.deploy(as_user(alice.id), "pushed")
        assert queued.archive_name == "v1-app.tar"
        done = await deploying.settle(queued)
    assert (done.state, done.kind) == ("running", kind), await deploying.log(done)
    answer = await http_request(nginx_router, "pushed")
    assert (answer.status, answer.text.strip()) == (200, page)
