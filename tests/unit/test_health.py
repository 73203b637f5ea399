"""The readiness probe: HTTP answers below 500 mean ready, nothing listening means wait, and
waiting ends with a message that tells the user what to check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.routing.health import NotReady, Probe, Unhealthy, http_status, wait_until_ready
from tests.services import free_port


async def serve(reply: bytes) -> tuple[asyncio.Server, int, list[bytes]]:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


@pytest.fixture
async def teapot() -> AsyncIterator[tuple[int, list[bytes]]]:
    server, port, requests = await serve(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
    async with server:
        yield port, requests


async def test_an_http_answer_gives_its_status_and_the_request_names_the_app(
    teapot: tuple[int, list[bytes]],
) -> None:
    port, requests = teapot
    assert await http_status(port, "shop.example.test") == 418
    assert b"Host: shop.example.test\r\n" in requests[0]


async def test_nothing_listening_or_something_else_than_http_is_not_ready_yet() -> None:
    with pytest.raises(NotReady, match="nothing answers"):
        await http_status(free_port(), "shop.test")
    server, port, _ = await serve(b"SSH-2.0-OpenSSH\r\n")
    async with server:
        with pytest.raises(NotReady, match="not with HTTP"):
            await http_status(port, "shop.test")


async def test_waiting_retries_until_ready_and_stops_at_a_final_no() -> None:
    attempts = 0

    async def comes_up_on_the_fourth_look() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise NotReady("starting")

    await wait_until_ready(Probe(comes_up_on_the_fourth_look), deadline=10)
    assert attempts == 4

    looks = 0

    async def crashed() -> None:
        nonlocal looks
        looks += 1
        raise Unhealthy("The app stopped right after starting (exit code 3).")

    with pytest.raises(Unhealthy, match="exit code 3"):
        await wait_until_ready(Probe(crashed), deadline=10)
    assert looks == 1


async def test_an_app_that_never_answers_fails_with_what_to_check() -> None:
    async def never() -> None:
        raise NotReady("nothing answers on port 20001 yet")

    with pytest.raises(Unhealthy) as failed:
        await wait_until_ready(Probe(never), deadline=0.5)
    assert "nothing answers on port 20001" in failed.value.message
    assert "PORT" in failed.value.message
