"""Probe app: the smallest forwarding gateway, as a raw ASGI callable.

POST /v1/chat/completions reads the body, posts it to PROBE_UPSTREAM_URL and answers with the
upstream's status and bytes. PROBE_CLIENT picks the pooled upstream client ("aiohttp" or
"httpx"), so two copies of this app differ only in the client. GET /health answers 200.
Used only by bench/probes to justify choices; nothing in the product imports it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

UPSTREAM = os.environ.get("PROBE_UPSTREAM_URL", "http://127.0.0.1:9").rstrip("/")
CLIENT = os.environ.get("PROBE_CLIENT", "aiohttp")
_HEADERS = {"Content-Type": "application/json"}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AiohttpForwarder:
    def __init__(self) -> None:
        self.session: Any = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        async with self.session.post(UPSTREAM + path, data=body, headers=_HEADERS) as response:
            return response.status, await response.read()


class HttpxForwarder:
    def __init__(self) -> None:
        self.client: Any = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        import httpx

        if self.client is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            self.client = httpx.AsyncClient(limits=limits, timeout=60)
        response = await self.client.post(UPSTREAM + path, content=body, headers=_HEADERS)
        return response.status_code, response.content


def make_forwarder(client: str = CLIENT) -> AiohttpForwarder | HttpxForwarder:
    return HttpxForwarder() if client == "httpx" else AiohttpForwarder()


forwarder = make_forwarder()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/health":
        await _answer(send, 200, b"{}")
        return
    body = await _read_body(receive)
    status, answer = await forwarder.post("/v1/chat/completions", body)
    await _answer(send, status, answer)
