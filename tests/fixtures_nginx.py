"""nginx fixtures: one private nginx for the test session, and a router each test starts empty.

`nginx_process` runs the machine's nginx with its own prefix in a temp root on a free loopback
port, for the domain `test.localhost`, with a 1 MiB body limit. The root is made with
`temp_root` (mode 0755), since nginx's workers run as nobody when the tests run as root and must
reach the pages and temp folders: a prefix under pytest's tmp_path (mode 0700) is refused.

`nginx_router` is that nginx's router; every vhost (and any stray file a test left in vhosts/)
is removed after each test, with one reload. `http_request` sends one request through nginx on
a new connection, in a thread, as a browser or curl would.
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest

from core.routing.nginx import NginxProcess, NginxRouter
from tests.services import free_port, temp_root

TEST_DOMAIN = "test.localhost"
TEST_BODY_LIMIT_MB = 1


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def _request(
    port: int, host: str, path: str, method: str, headers: Mapping[str, str], body: bytes | None
) -> HttpResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return HttpResponse(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


async def http_request(
    router: NginxRouter,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> HttpResponse:
    """`method path` to the router's nginx with `Host: host`, on a new connection.

    A bare project name as `host` means `<project>.<domain>:<port>`, as in the project's URL.
    """
    if "." not in host:
        host = f"{host}.{router.domain}:{router.port}"
    return await asyncio.to_thread(
        _request, router.port, host, path, method, dict(headers or {}), body
    )


async def clear_vhosts(router: NginxRouter) -> None:
    """Remove every file in vhosts/ and make nginx forget them, with one confirmed reload."""
    folder = router.vhosts_dir
    projects = router.projects()
    keep = projects[-1] if projects else None
    removed = False
    for path in folder.iterdir() if folder.exists() else ():
        if keep is None or path != router.vhost_path(keep):
            path.unlink()
            removed = True
    if keep is not None:
        await router.remove(keep)
    elif removed:
        await router.reload()


@pytest.fixture(scope="session")
async def nginx_process() -> AsyncIterator[NginxProcess]:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: run the tests with ./scripts/dev test")
    root = temp_root("ghst-nginx-")
    router = NginxRouter(
        prefix=root / "nginx",
        domain=TEST_DOMAIN,
        port=free_port(),
        body_limit_mb=TEST_BODY_LIMIT_MB,
    )
    process = NginxProcess(router)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def nginx_router(nginx_process: NginxProcess) -> AsyncIterator[NginxRouter]:
    router = nginx_process.router
    await clear_vhosts(router)
    yield router
    await clear_vhosts(router)
