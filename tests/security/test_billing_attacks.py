"""Attacks on the money paths: the payment webhook over HTTP (forged, altered, replayed, for
a provider that takes none, through the panel's nginx), and uploads to a suspended project
through OpenSSH's scp and sftp.

The webhook endpoint is the one `ghst serve` starts (core.billing.webhooks), on a real panel
with the test provider enabled and a secret of the test's own."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.billing.payments import WebhookTestProvider
from core.billing.webhooks import WebhookServer
from core.panel import Panel
from core.routing.nginx import NginxProcess, NginxRouter
from core.settings import Settings
from tests.actors import SYSTEM, acting
from tests.conftest import reset_state, with_settings
from tests.e2e.helpers import running_server
from tests.e2e.transfers import account, app_zip, remote, run, scp_command, sftp_batch, write
from tests.services import free_port, temp_root

SECRET = "webhook secret of this test"


@pytest.fixture
async def paying_panel(settings: Settings) -> AsyncIterator[Panel]:
    await reset_state(settings)
    panel = await Panel.open(
        with_settings(settings, payments_test_provider=True, payment_webhook_secret=SECRET)
    )
    try:
        yield panel
    finally:
        await panel.close()


@pytest.fixture
async def endpoint(paying_panel: Panel) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(paying_panel.billing.payments, "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def post(
    port: int,
    path: str,
    body: bytes,
    signature: str | None,
    *,
    host: str = "127.0.0.1",
    method: str = "POST",
) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": host, "Content-Type": "application/json"}
        if signature is not None:
            headers["X-Ghst-Signature"] = signature
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.getheader("Content-Type") != "application/json":
            return response.status, {}  # nginx's own page
        return response.status, json.loads(data)
    finally:
        connection.close()


async def send(
    server: WebhookServer, body: bytes, signature: str | None, path: str = "/payments/webhook/test"
) -> tuple[int, dict[str, str]]:
    return await asyncio.to_thread(post, server.port, path, body, signature)


async def test_only_a_fresh_webhook_signed_by_the_provider_credits_and_only_once(
    paying_panel: Panel, endpoint: WebhookServer
) -> None:
    provider = WebhookTestProvider(SECRET.encode())
    alice = acting(await paying_panel.accounts.sign_up("alice", "a@example.com", "correct horse b"))
    payment, _ = await paying_panel.billing.payments.start(alice, 50_000, "test")
    body = provider.webhook(payment.provider_payment_id, 50_000)

    # Forged: no signature, a made-up one, one made with another secret.
    for signature in (None, "t=1,v1=" + "0" * 64, WebhookTestProvider(b"guess").sign(body)):
        status, _ = await send(endpoint, body, signature)
        assert status == 403
    # Altered: the amount raised after signing.
    greedy = provider.webhook(payment.provider_payment_id, 5_000_000)
    assert (await send(endpoint, greedy, provider.sign(body)))[0] == 403
    # A captured webhook replayed after its age is refused, even with its true signature.
    stale = provider.sign(body, at=time.time() - WebhookTestProvider.MAX_AGE - 5)
    assert (await send(endpoint, body, stale))[0] == 403
    # The manual provider takes no webhook; an unknown one does not exist.
    assert (await send(endpoint, body, provider.sign(body), "/payments/webhook/manual"))[0] == 403
    assert (await send(endpoint, body, provider.sign(body), "/payments/webhook/nope"))[0] == 404
    assert await paying_panel.billing.balances.balance(alice) == 0

    signature = provider.sign(body)
    answers = await asyncio.gather(*(send(endpoint, body, signature) for _ in range(5)))
    assert {status for status, _ in answers} == {200}
    assert {answer["status"] for _, answer in answers} == {"confirmed"}
    assert await paying_panel.billing.balances.balance(alice) == 50_000
    topups = [e for e in await paying_panel.billing.balances.history(alice) if e.kind == "topup"]
    assert len(topups) == 1


async def test_a_webhook_for_someone_elses_payment_credits_its_payer_not_the_sender(
    paying_panel: Panel, endpoint: WebhookServer
) -> None:
    provider = WebhookTestProvider(SECRET.encode())
    payments = paying_panel.billing.payments
    alice = acting(await paying_panel.accounts.sign_up("alice", "a@example.com", "correct horse b"))
    bob = acting(await paying_panel.accounts.sign_up("bob", "b@example.com", "correct horse b"))
    payment, _ = await payments.start(bob, 1_000, "test")
    # Alice cannot sign, so she cannot confirm bob's payment, nor a made-up id of her own.
    made_up = provider.webhook("test-made-up", 1_000)
    assert (await send(endpoint, made_up, provider.sign(made_up)))[0] == 404
    body = provider.webhook(payment.provider_payment_id, 1_000)
    assert (await send(endpoint, body, provider.sign(body)))[0] == 200
    assert await paying_panel.billing.balances.balance(bob) == 1_000
    assert await paying_panel.billing.balances.balance(alice) == 0


async def test_the_endpoint_refuses_what_is_not_a_webhook(endpoint: WebhookServer) -> None:
    assert (await send(endpoint, b"{}", None, "/admin"))[0] == 404
    status, _ = await asyncio.to_thread(
        post, endpoint.port, "/payments/webhook/test", b"", None, method="GET"
    )
    assert status == 405
    # A body announced too large is refused before it is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(
        b"POST /payments/webhook/test HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 413")
    writer.close()
    await writer.wait_closed()


async def test_a_webhook_reaches_the_panel_through_nginx_on_the_panel_host(
    paying_panel: Panel, endpoint: WebhookServer
) -> None:
    root = temp_root("ghst-webhook-nginx-")
    router = NginxRouter(
        prefix=root / "nginx", domain="test.localhost", port=free_port(), webhook_port=endpoint.port
    )
    process = NginxProcess(router)
    await process.start()
    try:
        provider = WebhookTestProvider(SECRET.encode())
        alice = acting(
            await paying_panel.accounts.sign_up("alice", "a@example.com", "correct horse b")
        )
        payment, _ = await paying_panel.billing.payments.start(alice, 2_500, "test")
        body = provider.webhook(payment.provider_payment_id, 2_500)
        panel_host = f"panel.test.localhost:{router.port}"
        status, answer = await asyncio.to_thread(
            post, router.port, "/payments/webhook/test", body, provider.sign(body), host=panel_host
        )
        assert (status, answer["status"]) == (200, "confirmed")
        assert await paying_panel.billing.balances.balance(alice) == 2_500
        # Only the webhook path is passed on; a tenant's host never reaches the endpoint.
        other = await asyncio.to_thread(post, router.port, "/", b"", None, host=panel_host)
        assert other[0] == 404
        shop_host = f"shop.test.localhost:{router.port}"
        status, answer = await asyncio.to_thread(
            post, router.port, "/payments/webhook/test", body, provider.sign(body), host=shop_host
        )
        # The unknown-host page (a static page, so nginx answers a POST to it with 405).
        assert status in (404, 405) and answer == {}
    finally:
        await process.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_suspended_project_refuses_uploads_through_scp_and_sftp(
    panel: Panel, tmp_path: Path
) -> None:
    alice = await account(panel, tmp_path, "alice")
    await panel.billing.subscriptions.create_project(acting(alice.id), "shop", "host-0")
    await panel.billing.balances.adjust(SYSTEM, alice.id, -100, "spent")
    async with panel.pool.acquire() as conn:
        since = await panel.billing.suspensions.in_arrears_since(conn, alice.id)
    assert since is not None
    await panel.billing.suspensions.run(now=since + timedelta(days=3))
    write(tmp_path / "app.zip", app_zip())
    async with running_server(panel) as server:
        for mode in ((), ("-O",)):
            refused = await run(
                scp_command(server, alice, *mode, "app.zip", remote(alice, "shop/")),
                cwd=tmp_path,
            )
            assert refused.status != 0
            assert "suspended for non-payment" in refused.stderr, refused.output
        batch = await sftp_batch(server, alice, "put app.zip shop/app.zip", tmp_path)
        assert batch.status != 0
        assert "suspended for non-payment" in batch.output, batch.output
    assert await panel.archives.list(acting(alice.id), "shop") == []
