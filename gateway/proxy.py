"""Forwarding a validated request to the upstream and relaying its answer.

Non-streaming answers are passed through as the upstream's bytes (status and OpenAI error
bodies included) after reading their `usage`. Streams are relayed event by event as they arrive;
the gateway always asks for the usage chunk and hides it from clients that did not ask.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
import structlog

from gateway import metrics, upstream
from gateway.context import RequestContext, Usage
from gateway.errors import GatewayError, render
from gateway.http import Response, StreamResponse

log = structlog.get_logger(__name__)

_DONE = b"data: [DONE]"
Answer = TypeVar("Answer")


def _reply_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [
        (name, value) for name, value in headers.items() if name != upstream.UPSTREAM_COST_HEADER
    ]


async def forward(
    ctx: RequestContext,
    path: str,
    payload: dict[str, Any],
    admitting: asyncio.Future[None] | None = None,
) -> Response:
    """`admitting`: the admission, when it runs beside the forwarding (gateway.views)."""
    reply = await _once_admitted(ctx, admitting, ctx.runtime.resilience.post(ctx, path, payload))
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
        if ctx.cache is not None and isinstance(answer, dict):
            ctx.after_response.append(
                ctx.runtime.response_cache.store(
                    ctx.cache,
                    reply.body,
                    usage=ctx.usage,
                    served_model=ctx.served_model or payload["model"],
                )
            )
    return Response(
        reply.status,
        reply.body,
        headers=_reply_headers(reply.headers),
        content_type=reply.content_type,
    )


async def forward_stream(
    ctx: RequestContext,
    path: str,
    payload: dict[str, Any],
    admitting: asyncio.Future[None] | None = None,
) -> Response | StreamResponse:
    stream_options = payload.get("stream_options") or {}
    client_wants_usage = stream_options.get("include_usage") is True
    payload = {**payload, "stream_options": {**stream_options, "include_usage": True}}
    stream = await _once_admitted(
        ctx, admitting, ctx.runtime.resilience.post_stream(ctx, path, payload)
    )
    if isinstance(stream, upstream.UpstreamReply):  # the upstream refused to stream
        return Response(stream.status, stream.body, content_type=stream.content_type)
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


async def _once_admitted(
    ctx: RequestContext, admitting: asyncio.Future[None] | None, answer: Awaitable[Answer]
) -> Answer:
    """The upstream's answer, once the admission running beside it has said yes.

    A refusal wins: the upstream's answer (or its failure) is dropped, and an open stream is
    closed, which cancels the generation upstream."""
    if admitting is None:
        return await answer
    try:
        got = await answer
    except GatewayError:
        await admitting  # its refusal, if any, is the answer
        raise
    except BaseException:
        await asyncio.wait([admitting])  # a ticket it takes must reach the settlement
        if not admitting.cancelled():
            admitting.exception()  # retrieved: the failure reported is the one raised here
        raise
    try:
        await admitting
    except BaseException as failure:
        if isinstance(got, upstream.UpstreamStream):
            await _abandon(got)
        if isinstance(failure, GatewayError):
            metrics.observe_early_forward_refused(ctx)
            log.warning(
                "early_forward_refused",
                code=failure.code,
                upstream_status=getattr(got, "status", None),
            )
        raise
    return got


async def _abandon(stream: upstream.UpstreamStream) -> None:
    stream.close()
    if stream.on_end is not None:
        await asyncio.shield(stream.on_end("abandoned"))


async def _relay(
    ctx: RequestContext, stream: upstream.UpstreamStream, *, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    outcome = "abandoned"
    try:
        async for event in stream.events():
            ctx.mark_first_byte()
            ctx.streamed_events.append(event)
            if _may_carry_usage(event):
                chunk = _chunk_of(event)
                usage = Usage.from_openai(chunk.get("usage")) if chunk else None
                if chunk is not None and usage is not None:
                    ctx.usage = usage
                    ctx.upstream_cost = _reported_cost(chunk) or ctx.upstream_cost
                    if not client_wants_usage:
                        # The gateway asked for usage, not the client: hide it from the client.
                        if not chunk.get("choices"):
                            continue
                        chunk.pop("usage")
                        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
            yield event
        outcome = "success"
        if ctx.cache is not None:
            ctx.after_response.append(
                ctx.runtime.response_cache.store_stream(
                    ctx.cache,
                    ctx.streamed_events,
                    usage=ctx.usage,
                    served_model=ctx.served_model or ctx.requested_model or "",
                )
            )
    except GatewayError as error:
        # Headers are gone already: tell the client in-band, then end the stream.
        outcome = "failure"
        ctx.status = error.status
        yield b"event: error\ndata: " + render(error) + b"\n\n"
    finally:
        ctx.upstream_latency_ms = stream.elapsed_ms()
        stream.close()
        if stream.on_end is not None:
            await asyncio.shield(stream.on_end(outcome))


def _may_carry_usage(event: bytes) -> bool:
    # Cheap byte checks first: most chunks say `"usage":null` or nothing about usage.
    return (
        b'"usage"' in event
        and b'"usage":null' not in event
        and b'"usage": null' not in event
        and event.strip() != _DONE
    )


def _chunk_of(event: bytes) -> dict[str, Any] | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None
            return chunk if isinstance(chunk, dict) else None
    return None


def _reported_cost(chunk: dict[str, Any]) -> str | None:
    """LiteLLM reports a stream's cost as `usage.cost` (its headers left before it was known)."""
    cost = chunk["usage"].get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return str(cost)
    return None
