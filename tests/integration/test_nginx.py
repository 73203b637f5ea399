"""The nginx router and process against the machine's real nginx.

The session's nginx (tests/fixtures_nginx.py) routes `<project>.test.localhost` to tiny HTTP
servers started here on loopback. Every request goes through nginx on a new connection, the way
a browser's first request after a deploy would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.routing.nginx import NginxProcess, NginxRouter, RoutingError
from tests.fixtures_nginx import TEST_BODY_LIMIT_MB, TEST_DOMAIN, clear_vhosts, http_request
from tests.services import free_port, temp_root

MiB = 1 << 20


class Upstream:
    """A small app: answers JSON describing the request it got (name, path, headers, body size).

    `/status/<code>` answers that status with the body "the app's own error"; a request with
    `Upgrade` is switched to a raw tunnel that echoes what it receives, prefixed with "echo:".
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            seen = {"name": self.name, "method": method, "path": path, "headers": headers}
            self.requests.append({**seen, "body_length": len(body)})
            if "upgrade" in headers:
                writer.write(
                    b"HTTP/1.1 101 Switching Protocols\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                )
                await writer.drain()
                data = await reader.read(100)
                writer.write(b"echo:" + data)
                await writer.drain()
                return
            status, payload = 200, json.dumps({**seen, "body_length": len(body)}).encode()
            if path.startswith("/status/"):
                status, payload = int(path.rsplit("/", 1)[1]), b"the app's own error"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def upstream(name: str) -> AsyncIterator[Upstream]:
    app = Upstream(name)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def answered_by(router: NginxRouter, project: str) -> str:
    response = await http_request(router, project)
    assert response.status == 200, response.text
    name: str = json.loads(response.body)["name"]
    return name


async def test_a_routed_project_gets_the_apps_page_with_proxy_headers(
    nginx_router: NginxRouter,
) -> None:
    async with upstream("alpha") as app:
        await nginx_router.route("alpha-app", app.port, 7)
        assert app.requests == []  # confirming the switch never bothers the app
        assert nginx_router.projects() == ["alpha-app"]
        response = await http_request(
            nginx_router,
            "alpha-app",
            "/hello?x=1",
            headers={"X-Forwarded-For": "6.6.6.6", **nginx_router.probe_headers()},
        )

    assert response.status == 200
    assert response.headers["x-ghst-deployment"] == "7"
    seen = json.loads(response.body)
    assert (seen["name"], seen["method"], seen["path"]) == ("alpha", "GET", "/hello?x=1")
    host = f"alpha-app.{TEST_DOMAIN}:{nginx_router.port}"
    assert nginx_router.url("alpha-app") == f"http://{host}/"
    headers = seen["headers"]
    assert headers["host"] == host
    assert headers["x-forwarded-host"] == host
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(nginx_router.port)
    assert headers["x-real-ip"] == "127.0.0.1"
    # nginx is the edge: a client cannot make the app believe it comes from elsewhere.
    assert headers["x-forwarded-for"] == "127.0.0.1"


async def test_a_websocket_upgrade_reaches_the_app_and_becomes_a_tunnel(
    nginx_router: NginxRouter,
) -> None:
    async with upstream("ws") as app:
        await nginx_router.route("chat", app.port, 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", nginx_router.port)
        try:
            writer.write(
                f"GET /socket HTTP/1.1\r\nHost: chat.{TEST_DOMAIN}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 "), head
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(9), 10) == b"echo:ping"
        finally:
            writer.close()
        seen = app.requests[0]["headers"]
    assert isinstance(seen, dict)
    assert seen["upgrade"] == "websocket"
    assert seen["connection"].lower() == "upgrade"
    assert seen["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="


async def test_a_body_over_the_limit_is_refused_with_413(nginx_router: NginxRouter) -> None:
    async with upstream("upload") as app:
        await nginx_router.route("uploads", app.port, 1)
        small = await http_request(
            nginx_router, "uploads", "/", method="POST", body=b"x" * (MiB // 2)
        )
        big = await http_request(
            nginx_router,
            "uploads",
            "/",
            method="POST",
            body=b"x" * (TEST_BODY_LIMIT_MB * MiB + MiB // 2),
        )
    assert small.status == 200
    assert json.loads(small.body)["body_length"] == MiB // 2
    assert big.status == 413
    assert len(app.requests) == 1  # the big body never reached the app


async def test_an_unknown_host_gets_the_404_page(nginx_router: NginxRouter) -> None:
    async with upstream("shop") as app:
        await nginx_router.route("shop", app.port, 1)
        response = await http_request(nginx_router, "nothing-here")
        other_domain = await http_request(nginx_router, "example.org")
        below = await http_request(nginx_router, f"www.shop.{TEST_DOMAIN}")
        assert app.requests == []
    assert below.status == 404

    assert response.status == 404
    assert "<title>No site here</title>" in response.text
    assert f"nothing-here.{TEST_DOMAIN}" in response.text
    assert other_domain.status == 404
    assert "No site here" in other_domain.text
    assert "x-ghst-deployment" not in response.headers


async def test_a_stopped_project_gets_the_503_page_naming_it(nginx_router: NginxRouter) -> None:
    async with upstream("shop") as app:
        await nginx_router.route("shop", app.port, 3)
        await nginx_router.route_stopped("shop")
        response = await http_request(nginx_router, "shop", "/cart")
        assert app.requests == []
    assert response.status == 503
    assert "<h1>shop is stopped</h1>" in response.text
    assert "<title>shop is stopped</title>" in response.text
    assert nginx_router.projects() == ["shop"]


async def test_a_removed_project_is_an_unknown_host_again(nginx_router: NginxRouter) -> None:
    async with upstream("gone") as app:
        await nginx_router.route("gone", app.port, 4)
        await nginx_router.remove("gone")
        response = await http_request(nginx_router, "gone")
        assert app.requests == []
    assert response.status == 404
    assert "No site here" in response.text
    assert not nginx_router.vhost_path("gone").exists()
    assert nginx_router.projects() == []
    await nginx_router.remove("gone")  # removing twice is fine


async def test_an_app_that_is_down_gets_the_friendly_502_page(nginx_router: NginxRouter) -> None:
    await nginx_router.route("sleepy", free_port(), 5)
    response = await http_request(nginx_router, "sleepy", headers=nginx_router.probe_headers())
    assert response.status == 502
    assert "<h1>sleepy is not answering right now</h1>" in response.text
    assert response.headers["x-ghst-deployment"] == "5"


async def test_the_apps_own_error_pages_pass_through(nginx_router: NginxRouter) -> None:
    async with upstream("errors") as app:
        await nginx_router.route("errors", app.port, 6)
        bad_gateway = await http_request(nginx_router, "errors", "/status/502")
        server_error = await http_request(nginx_router, "errors", "/status/500")
        not_found = await http_request(nginx_router, "errors", "/status/404")
        unavailable = await http_request(nginx_router, "errors", "/status/503")
    assert (not_found.status, not_found.text) == (404, "the app's own error")
    assert (unavailable.status, unavailable.text) == (503, "the app's own error")
    assert (bad_gateway.status, bad_gateway.text) == (502, "the app's own error")
    assert (server_error.status, server_error.text) == (500, "the app's own error")


async def test_after_a_switch_every_request_goes_to_the_new_app(
    nginx_router: NginxRouter,
) -> None:
    async with upstream("A") as old, upstream("B") as new:
        await nginx_router.route("switchy", old.port, 10)
        assert await answered_by(nginx_router, "switchy") == "A"
        await nginx_router.route("switchy", new.port, 11)
        # No waiting: route() returned, so the old app may be stopped now.
        await old.stop()
        answers = [await answered_by(nginx_router, "switchy") for _ in range(30)]
        probe = nginx_router.probe_headers()
        headers = (await http_request(nginx_router, "switchy", headers=probe)).headers
    assert answers == ["B"] * 30
    assert headers["x-ghst-deployment"] == "11"


async def test_a_configuration_nginx_refuses_keeps_the_previous_route(
    nginx_router: NginxRouter,
) -> None:
    async with upstream("A") as old, upstream("B") as new:
        await nginx_router.route("steady", old.port, 20)
        before = nginx_router.vhost_path("steady").read_text()
        # Something nginx refuses is in the folder (a test-only way to make `nginx -t` fail).
        (nginx_router.vhosts_dir / "zz_broken.conf").write_text("this is not nginx\n")

        with pytest.raises(RoutingError) as caught:
            await nginx_router.route("steady", new.port, 21)
        with pytest.raises(RoutingError):
            await nginx_router.route("newcomer", new.port, 22)

        assert nginx_router.vhost_path("steady").read_text() == before
        assert not nginx_router.vhost_path("newcomer").exists()
        assert nginx_router.projects() == ["steady"]
        assert await answered_by(nginx_router, "steady") == "A"
        assert (await http_request(nginx_router, "newcomer")).status == 404
        assert new.requests == []
    message = str(caught.value)
    assert message.startswith("nginx refused the new configuration: unexpected end of file")
    assert "zz_broken.conf:2;" in message
    assert message.endswith("; the previous one is still in use.")
    assert "\n" not in message


async def test_a_bad_project_name_is_refused_before_anything_is_written(
    nginx_router: NginxRouter,
) -> None:
    for name in ("x;}server{", "Shop", "a", "../etc", "shop.other", "shop\nlisten 1"):
        with pytest.raises(ValidationError):
            await nginx_router.route(name, 8000, 1)
        with pytest.raises(ValidationError):
            await nginx_router.route_stopped(name)
    with pytest.raises(ValidationError):
        await nginx_router.route("shop", 70000, 1)
    with pytest.raises(ValidationError):
        await nginx_router.route("shop", 8000, 0)
    assert list(nginx_router.vhosts_dir.iterdir()) == []


async def test_twenty_projects_routed_at_once_are_all_live(nginx_router: NginxRouter) -> None:
    names = [f"crowd-{number:02d}" for number in range(20)]
    async with upstream("crowd") as app:
        await asyncio.gather(
            *(nginx_router.route(name, app.port, 100 + number) for number, name in enumerate(names))
        )
        probe = nginx_router.probe_headers()
        responses = [await http_request(nginx_router, name, headers=probe) for name in names]
    assert nginx_router.projects() == names
    assert [response.status for response in responses] == [200] * 20
    assert [response.headers["x-ghst-deployment"] for response in responses] == [
        str(100 + number) for number in range(20)
    ]


@pytest.fixture
def spare_prefix() -> Iterator[Path]:
    """A prefix of its own, for tests that run (or fail to run) another nginx."""
    root = temp_root("ghst-nginx-spare-")
    yield root / "nginx"
    shutil.rmtree(root, ignore_errors=True)


async def test_a_missing_nginx_binary_is_a_clear_error(spare_prefix: Path) -> None:
    router = NginxRouter(
        prefix=spare_prefix, domain=TEST_DOMAIN, port=free_port(), binary="/nowhere/nginx"
    )
    with pytest.raises(RoutingError, match=r"nginx is not installed on this server"):
        await router.route("shop", 8000, 1)
    assert not router.vhost_path("shop").exists()
    with pytest.raises(RoutingError, match=r"nginx is not installed on this server"):
        await NginxProcess(router).start()


async def test_without_a_running_nginx_changes_are_validated_and_written(
    spare_prefix: Path,
) -> None:
    router = NginxRouter(prefix=spare_prefix, domain=TEST_DOMAIN, port=free_port())
    await router.route("shop", 8000, 1)
    await router.route_stopped("later")
    assert router.projects() == ["later", "shop"]
    assert '"127.0.0.1:8000 1";' in router.vhost_path("shop").read_text()
    (router.vhosts_dir / "broken.conf").write_text("nonsense;\n")
    with pytest.raises(RoutingError, match="invalid number of the map parameters"):
        await router.route("shop", 8001, 2)
    assert '"127.0.0.1:8000 1";' in router.vhost_path("shop").read_text()


def _master_and_workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def _started_workers(master: int) -> list[int]:
    """The master's workers, once each has finished starting (it renames itself then, after it
    has dropped privileges): a worker just forked still looks like the master."""
    deadline = time.monotonic() + 10
    while True:
        workers = _master_and_workers(master)[1:]
        titles = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] for pid in workers]
        if (
            all(title == b"nginx: worker process" for title in titles)
            or time.monotonic() > deadline
        ):
            return workers
        time.sleep(0.01)


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _gone(pids: list[int]) -> bool:
    """None of `pids` runs any more (a zombie waiting for its parent has ended)."""
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return False
    return True


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_start_adopt_and_stop_a_private_nginx(spare_prefix: Path) -> None:
    router = NginxRouter(prefix=spare_prefix, domain=TEST_DOMAIN, port=free_port())
    process = NginxProcess(router)
    await process.start()
    try:
        assert process.running
        pid = int(router.pid_path.read_text())
        processes = _master_and_workers(pid)
        assert len(processes) >= 2
        if os.geteuid() == 0:  # the workers give up root once they have started
            workers = await asyncio.to_thread(_started_workers, pid)
            assert workers
            assert [_uid(worker) for worker in workers] == [65534] * len(workers)
        response = await http_request(router, "anything")
        assert response.status == 404

        # A panel restarted while nginx kept running adopts it instead of starting another.
        again = NginxProcess(router)
        await again.start()
        assert again.running
        assert int(router.pid_path.read_text()) == pid
        await again.stop()
        assert not again.running
        assert not process.running
    finally:
        await process.stop()
    assert await asyncio.to_thread(_gone, processes)
    assert not _accepts(router.port)
    assert not router.pid_path.exists()


async def test_stop_kills_an_nginx_that_does_not_finish_in_time(spare_prefix: Path) -> None:
    router = NginxRouter(prefix=spare_prefix, domain=TEST_DOMAIN, port=free_port())
    process = NginxProcess(router)
    process.stop_timeout = 0.5
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers: a request stays in flight
    await process.start()
    try:
        await router.route("slow", silent.getsockname()[1], 1)
        processes = _master_and_workers(int(router.pid_path.read_text()))
        hanging = asyncio.create_task(http_request(router, "slow"))
        await asyncio.sleep(0.3)
        await process.stop()
    finally:
        silent.close()
        await process.stop()
    assert not process.running
    assert await asyncio.to_thread(_gone, processes)
    assert not _accepts(router.port)
    with pytest.raises(ConnectionError):
        await hanging


async def test_nginx_that_cannot_listen_says_why(spare_prefix: Path) -> None:
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        router = NginxRouter(prefix=spare_prefix, domain=TEST_DOMAIN, port=taken.getsockname()[1])
        process = NginxProcess(router)
        with pytest.raises(RoutingError, match=r"could not start .*Address already in use"):
            await process.start()
        assert not process.running
    finally:
        taken.close()


async def test_every_file_the_tests_left_is_cleared(nginx_router: NginxRouter) -> None:
    async with upstream("left") as app:
        await nginx_router.route("left-over", app.port, 1)
        await nginx_router.route("left-too", app.port, 2)
        (nginx_router.vhosts_dir / "stray.conf").write_text("# stray\n")
        await clear_vhosts(nginx_router)
        assert list(nginx_router.vhosts_dir.iterdir()) == []
        assert (await http_request(nginx_router, "left-over")).status == 404
        assert (await http_request(nginx_router, "left-too")).status == 404
