"""The payment providers' webhook endpoint: a small HTTP server in the panel's process.

    POST /payments/webhook/<provider>     body: the provider's event, as it sends it
    X-Ghst-Signature: <the provider's signature of the body>

It listens on 127.0.0.1 only; the panel's nginx passes it `http://panel.<domain>/payments/
webhook/<provider>` (nginx/nginx.conf.template), the address a provider is given. Only the
provider's signature makes a webhook count (core.billing.payments); confirming is idempotent
on the provider's payment id, so a replay credits nothing. Bodies are small JSON events: no
card data ever reaches the panel (the provider's own pages take it).

Answers: 200 with the payment's status, 400 a body that is not an event (or not the payment's
amount), 403 a bad signature or a replay past its age, 404 an unknown provider or payment,
405/411/413 requests that are not a webhook, 503 the database is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re

from core.billing.payments import PaymentService
from core.errors import (
    NotFoundError,
    PanelError,
    PermissionDenied,
    UnavailableError,
    ValidationError,
)

log = logging.getLogger(__name__)

PATH = re.compile(r"^/payments/webhook/(?P<provider>[a-z][a-z0-9-]{0,30})$")
SIGNATURE_HEADER = "x-ghst-signature"
MAX_BODY = 64 * 1024
MAX_HEAD = 8 * 1024
READ_TIMEOUT = 10.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class WebhookServer:
    def __init__(self, payments: PaymentService, host: str = "127.0.0.1", port: int = 0) -> None:
        self._payments = payments
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                status, answer = await self._answer(reader)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            status, answer = 400, "incomplete request"
        body = json.dumps(answer if isinstance(answer, dict) else {"error": answer}).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str] | str]:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            return 400, "headers too large"
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.partition(" ")[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        found = PATH.match(target)
        if found is None:
            return 404, "no such endpoint"
        if method != "POST":
            return 405, "webhooks are POSTed"
        if "transfer-encoding" in headers or "content-length" not in headers:
            return 411, "a Content-Length is required"
        try:
            length = int(headers["content-length"])
        except ValueError:
            return 400, "bad Content-Length"
        if not 0 <= length <= MAX_BODY:
            return 413, "body too large"
        body = await reader.readexactly(length)
        try:
            payment = await self._payments.webhook(
                found["provider"], body, headers.get(SIGNATURE_HEADER, "")
            )
        except PermissionDenied as error:
            log.warning("a webhook for %s was refused: %s", found["provider"], error)
            return 403, error.message
        except NotFoundError as error:
            return 404, error.message
        except ValidationError as error:
            return 400, error.message
        except UnavailableError as error:
            return 503, error.message
        except PanelError as error:
            return 400, error.message
        return 200, {"payment": payment.provider_payment_id, "status": payment.status}
