"""Forwarding a validated request to the upstream and relaying its answer.

Non-streaming answers are passed through as the upstream's bytes (status and OpenAI error
bodies included) after reading their `usage`. Streams are relayed event by event as they arrive;
the gateway always asks for the usage chunk and hides it from clients that did not ask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway import upstream
from gateway.context import RequestContext, Usage
from gateway.errors import GatewayError, render
from gateway.http import Response, StreamResponse

_DONE = b"data: [DONE]"


def _reply_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [
        (name, value) for name, value in headers.items() if name != upstream.UPSTREAM_COST_HEADER
    ]


async def forward(ctx: RequestContext, path: str, payload: dict[str, Any]) -> Response:
    reply = await upstream.request(
        "POST", path, correlation_id=ctx.correlation_id, body=orjson.dumps(payload)
    )
    ctx.upstream_latency_ms = reply.latency_ms
    ctx.upstream_cost = reply.headers.get(upstream.UPSTREAM_COST_HEADER)
    if reply.status == 200:
        try:
            answer = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise GatewayError(
                502, "The upstream returned a malformed answer.", code="upstream_invalid_response"
            ) from None
        ctx.usage = Usage.from_openai(answer.get("usage") if isinstance(answer, dict) else None)
    return Response(
        reply.status,
        reply.body,
        headers=_reply_headers(reply.headers),
        content_type=reply.content_type,
    )


async def forward_stream(
    ctx: RequestContext, path: str, payload: dict[str, Any]
) -> Response | StreamResponse:
    stream_options = payload.get("stream_options") or {}
    client_wants_usage = stream_options.get("include_usage") is True
    payload = {**payload, "stream_options": {**stream_options, "include_usage": True}}
    stream = await upstream.open_stream(
        path, correlation_id=ctx.correlation_id, body=orjson.dumps(payload)
    )
    ctx.upstream_cost = stream.headers.get(upstream.UPSTREAM_COST_HEADER)
    if stream.status != 200:
        body = await stream.read()
        stream.close()
        return Response(
            stream.status,
            body,
            content_type=stream.response.headers.get("Content-Type", "application/json"),
        )
    return StreamResponse(
        _relay(ctx, stream, client_wants_usage=client_wants_usage),
        headers=_reply_headers(stream.headers),
    )


async def _relay(
    ctx: RequestContext, stream: upstream.UpstreamStream, *, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    try:
        async for event in stream.events():
            ctx.mark_first_byte()
            ctx.streamed_events.append(event)
            if b'"usage"' in event and not _is_done(event):
                usage, reported_cost, is_usage_only = _read_usage(event)
                if usage is not None:
                    ctx.usage = usage
                if reported_cost is not None:
                    ctx.upstream_cost = reported_cost
                if is_usage_only and usage is not None and not client_wants_usage:
                    continue
            yield event
    except GatewayError as error:
        # Headers are gone already: tell the client in-band, then end the stream.
        ctx.status = error.status
        yield b"event: error\ndata: " + render(error) + b"\n\n"
    finally:
        ctx.upstream_latency_ms = stream.elapsed_ms()
        stream.close()


def _is_done(event: bytes) -> bool:
    return event.strip() == _DONE


def _read_usage(event: bytes) -> tuple[Usage | None, str | None, bool]:
    """The usage an SSE event carries, the cost the upstream reports in it (LiteLLM puts
    `usage.cost` there, since a stream's headers leave before the cost is known), and whether
    the event carries nothing else (no choices)."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None, None, False
            if not isinstance(chunk, dict):
                return None, None, False
            usage = chunk.get("usage")
            cost = usage.get("cost") if isinstance(usage, dict) else None
            reported = (
                str(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
            )
            return Usage.from_openai(usage), reported, not chunk.get("choices")
    return None, None, False
