"""The only module that talks HTTP to the upstream (LiteLLM or any OpenAI-compatible server).

One pooled aiohttp session per process, created lazily on first use and closed at shutdown.
aiohttp rather than httpx: in the same forwarding probe httpx reached 0.58× / 0.23× / 0.16× of
aiohttp's throughput at 1 / 16 / 64 clients, at about 10× the CPU (docs/BENCHMARKS.md).

Transport failures become GatewayErrors here: unreachable → 502, timeout → 504.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from django.conf import settings

from gateway.errors import GatewayError

# Headers of the upstream's answer that the client may see. Everything else stays inside.
PASSTHROUGH_RESPONSE_HEADERS = ("x-request-id", "openai-processing-ms")
UPSTREAM_COST_HEADER = "x-litellm-response-cost"

_session: aiohttp.ClientSession | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """One OpenAI-compatible server the gateway may forward to."""

    name: str
    base_url: str  # without a trailing slash and without /v1
    api_key: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    latency_ms: float


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.AICC_UPSTREAM_MAX_CONNECTIONS,
                keepalive_timeout=30,
                ttl_dns_cache=300,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.AICC_UPSTREAM_CONNECT_TIMEOUT_S,
                sock_read=settings.AICC_UPSTREAM_READ_TIMEOUT_S,
            ),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # One session serves every tenant: a cookie an upstream (or its load balancer)
            # sets for one request must not ride along on the next tenant's.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
    return _session


async def close() -> None:
    global _session
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None


def _headers(target: Upstream, correlation_id: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Correlation-ID": correlation_id}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    return headers


def _transport_error(exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return GatewayError(504, "The upstream did not answer in time.", code="upstream_timeout")
    return GatewayError(502, "The upstream could not be reached.", code="upstream_unreachable")


def _reply_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        name: response.headers[name]
        for name in (*PASSTHROUGH_RESPONSE_HEADERS, UPSTREAM_COST_HEADER)
        if name in response.headers
    }


async def request(
    target: Upstream, method: str, path: str, *, correlation_id: str, body: bytes | None = None
) -> UpstreamReply:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with session().request(
            method, target.base_url + path, data=body, headers=_headers(target, correlation_id)
        ) as response:
            payload = await response.read()
            return UpstreamReply(
                status=response.status,
                body=payload,
                content_type=response.headers.get("Content-Type", "application/json"),
                headers=_reply_headers(response),
                latency_ms=(loop.time() - started) * 1000,
            )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _transport_error(exc) from exc


@dataclass(slots=True)
class UpstreamStream:
    """An open streaming answer. `events()` yields whole SSE events as they arrive."""

    response: aiohttp.ClientResponse
    started: float
    # Called once with the stream's outcome ("success", "failure" or "abandoned"), so the
    # circuit breaker judges a stream by how it ended, not by its status line.
    on_end: Callable[[str], Awaitable[None]] | None = None

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def headers(self) -> dict[str, str]:
        return _reply_headers(self.response)

    async def events(self) -> AsyncIterator[bytes]:
        """Complete SSE events (ending in a blank line), each the moment its last byte arrives.

        Raises GatewayError when the upstream breaks off mid-stream.
        """
        pending = b""
        try:
            async for chunk in self.response.content.iter_any():
                pending += chunk
                while True:
                    end = _event_end(pending)
                    if end < 0:
                        break
                    yield pending[:end]
                    pending = pending[end:]
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _stream_error(exc) from exc
        if pending.strip():
            yield pending

    async def read(self) -> bytes:
        try:
            return await self.response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc) from exc

    def elapsed_ms(self) -> float:
        return (asyncio.get_running_loop().time() - self.started) * 1000

    def close(self) -> None:
        # Closing (not releasing) drops the connection, which cancels generation upstream.
        self.response.close()


def _event_end(buffer: bytes) -> int:
    for separator in (b"\n\n", b"\r\n\r\n"):
        index = buffer.find(separator)
        if index >= 0:
            return index + len(separator)
    return -1


def _stream_error(exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return GatewayError(504, "The upstream stopped sending in time.", code="upstream_timeout")
    return GatewayError(502, "The upstream stream broke off.", code="upstream_stream_broken")


async def open_stream(
    target: Upstream, path: str, *, correlation_id: str, body: bytes
) -> UpstreamStream:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        response = await session().post(
            target.base_url + path, data=body, headers=_headers(target, correlation_id)
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _transport_error(exc) from exc
    return UpstreamStream(response=response, started=started)
