"""The `/v1/*` endpoints. Each reads like the pipeline: authenticate, validate, route, cache,
meter, forward.

Branching lives in the modules; refusals are GatewayErrors rendered by gateway.app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from django.conf import settings

from gateway import upstream
from gateway.auth import authenticate, deprecation_headers
from gateway.cache import CACHE_HEADER
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.http import Request, Response, StreamResponse
from gateway.proxy import forward, forward_stream
from gateway.validation import (
    parse_json_object,
    validate_chat,
    validate_completion,
    validate_embedding,
)

log = structlog.get_logger(__name__)

AUTO_MODEL = "auto"


async def _authenticate(request: Request, ctx: RequestContext) -> None:
    try:
        ctx.caller = await authenticate(request.headers, ctx.runtime.credentials)
    except GatewayError as error:
        if error.status == 401:
            await ctx.runtime.failed_key_guard.refuse_if_abusive(
                ctx.runtime.redis, request.client_host, error
            )
        raise
    if ctx.caller.deprecated_until is not None:
        ctx.response_headers.extend(deprecation_headers(ctx.caller))
        log.warning(
            "deprecated_key_used",
            key_id=ctx.caller.record.key_public_id,
            deprecated_until=ctx.caller.deprecated_until.isoformat(),
        )
    ctx.runtime.last_used.note(ctx.caller.record.key_public_id)


def _check_model_allowed(ctx: RequestContext, model: str) -> None:
    """The key's model list binds what a client asks for, and what `auto` picks for it; a model
    the policy forces (e.g. privacy -> local) is the operator's decision and is not checked."""
    if model != AUTO_MODEL and not ctx.caller.record.is_model_allowed(model):  # type: ignore[union-attr]
        raise GatewayError(
            403,
            f"This API key may not use the model '{model}'.",
            code="model_not_allowed",
            param="model",
        )


async def _read_payload(request: Request) -> tuple[dict[str, Any], bytes]:
    body = await request.read_body(settings.AICC_MAX_BODY_BYTES)
    return parse_json_object(request.headers.get("content-type"), body), body


async def _generation(
    request: Request,
    ctx: RequestContext,
    path: str,
    validate: Callable[[dict[str, Any]], None],
    *,
    can_stream: bool = True,
) -> Response | StreamResponse:
    ctx.endpoint = path
    await _authenticate(request, ctx)
    payload, body = await _read_payload(request)
    validate(payload)
    ctx.use_payload(payload)
    _check_model_allowed(ctx, payload["model"])
    await ctx.runtime.router.route(ctx, payload, request.headers)
    if ctx.requested_model == AUTO_MODEL:
        _check_model_allowed(ctx, payload["model"])
    ctx.cache = await ctx.runtime.response_cache.lookup(
        tenant_id=ctx.caller.tenant_id,  # type: ignore[union-attr]
        endpoint=path,
        payload=payload,
        is_tenant_enabled=ctx.caller.record.is_response_cache_enabled,  # type: ignore[union-attr]
        header_value=request.headers.get(CACHE_HEADER),
    )
    admitting = None
    if ctx.cache.hit is None and ctx.runtime.meter.may_forward_early(ctx, payload, body):
        # Ample headroom: forward while the admission runs; nothing is sent back before it
        # has said yes (gateway.early_forward).
        admitting = asyncio.ensure_future(ctx.runtime.meter.admit(ctx, payload, body))
        ctx.is_forwarded_early = True
    else:
        await ctx.runtime.meter.admit(ctx, payload, body, is_cache_hit=ctx.cache.hit is not None)
    ctx.response_headers.append(ctx.cache.header())
    if ctx.cache.hit is not None:
        return ctx.runtime.response_cache.respond(ctx, ctx.cache.hit)
    if can_stream and payload.get("stream"):
        return await forward_stream(ctx, path, payload, admitting)
    return await forward(ctx, path, payload, admitting)


async def chat_completions(request: Request, ctx: RequestContext) -> Response | StreamResponse:
    return await _generation(request, ctx, "/v1/chat/completions", validate_chat)


async def completions(request: Request, ctx: RequestContext) -> Response | StreamResponse:
    return await _generation(request, ctx, "/v1/completions", validate_completion)


async def embeddings(request: Request, ctx: RequestContext) -> Response | StreamResponse:
    return await _generation(request, ctx, "/v1/embeddings", validate_embedding, can_stream=False)


async def list_models(request: Request, ctx: RequestContext) -> Response:
    await _authenticate(request, ctx)
    reply = await upstream.request(
        ctx.runtime.targets.primary, "GET", "/v1/models", correlation_id=ctx.correlation_id
    )
    ctx.upstream_latency_ms = reply.latency_ms
    allowed = ctx.caller.record.allowed_models  # type: ignore[union-attr]
    if reply.status != 200 or allowed is None:
        return Response(reply.status, reply.body, content_type=reply.content_type)
    try:
        listing = orjson.loads(reply.body)
        listing["data"] = [model for model in listing["data"] if model.get("id") in allowed]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise GatewayError(
            502, "The upstream returned a malformed model list.", code="upstream_invalid_response"
        ) from None
    return Response(200, orjson.dumps(listing))


async def retrieve_model(request: Request, ctx: RequestContext, model_id: str) -> Response:
    await _authenticate(request, ctx)
    if not ctx.caller.record.is_model_allowed(model_id):
        raise GatewayError(
            404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model"
        )
    reply = await upstream.request(
        ctx.runtime.targets.primary,
        "GET",
        f"/v1/models/{model_id}",
        correlation_id=ctx.correlation_id,
    )
    ctx.upstream_latency_ms = reply.latency_ms
    return Response(reply.status, reply.body, content_type=reply.content_type)
