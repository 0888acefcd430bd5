"""The small slice of HTTP the hot path needs, straight on ASGI.

A Django async view doing the same forwarding reached 0.09–0.15× of a plain ASGI handler's
throughput here (docs/BENCHMARKS.md), so `/v1/*` runs on these two classes instead of
HttpRequest/HttpResponse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away while we were reading its body or writing our answer."""


class Request:
    __slots__ = ("_receive", "client_host", "headers", "method", "path", "scope", "state")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # Header names are lowercase in ASGI; a repeated header keeps its last value.
        self.headers: dict[str, str] = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        client = scope.get("client")
        self.client_host: str = client[0] if client else "unknown"
        self.state: dict[str, Any] = {}

    async def read_body(self, max_bytes: int) -> bytes:
        """The whole body, refusing with 413 as soon as it passes `max_bytes`.

        A declared Content-Length over the limit is refused before reading anything; a chunked
        body is counted as it arrives, so an oversized one is never held in memory whole.
        """
        declared = self.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise GatewayError(400, "Content-Length is not a number.", code="invalid_header")
            if int(declared) > max_bytes:
                raise _too_large(max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def wait_for_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError(
        413, f"Request body is larger than the {max_bytes} byte limit.", code="request_too_large"
    )


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"

    async def send(self, send: Send, request: Request | None = None) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": _encode_headers(self.headers, self.content_type, len(self.body)),
            }
        )
        await send({"type": "http.response.body", "body": self.body})


@dataclass(slots=True)
class StreamResponse:
    """Server-sent events, each chunk written the moment it is produced (no buffering)."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/event-stream"

    async def send(self, send: Send, request: Request | None = None) -> None:
        """Relay the chunks; if the client goes away, stop (closing the source) at once.

        ASGI servers drop writes to a gone client silently, so the disconnect is watched on
        `receive` and the relay cancelled, which closes the upstream stream.
        """
        relay = asyncio.ensure_future(self._relay(send))
        if request is None:
            await relay
            return
        disconnect = asyncio.ensure_future(request.wait_for_disconnect())
        done, _ = await asyncio.wait({relay, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if relay in done:
            disconnect.cancel()
            relay.result()
            return
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        raise ClientDisconnected

    async def _relay(self, send: Send) -> None:
        headers = [*self.headers, ("cache-control", "no-cache"), ("x-accel-buffering", "no")]
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": _encode_headers(headers, self.content_type, None),
            }
        )
        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError as exc:  # the server reports a gone client as an OSError on send
            raise ClientDisconnected from exc
        await send({"type": "http.response.body", "body": b""})


def _encode_headers(
    headers: list[tuple[str, str]], content_type: str, length: int | None
) -> list[tuple[bytes, bytes]]:
    encoded = [(b"content-type", content_type.encode())]
    if length is not None:
        encoded.append((b"content-length", str(length).encode()))
    encoded.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    return encoded
