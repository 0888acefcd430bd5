"""The `/v1/*` and `/health*` ASGI application, mounted beside Django in aicc_site.asgi.

It routes, binds the correlation id to every log line, renders every refusal in OpenAI's
shape, and writes one `request_completed` line per request (with the routing decision in it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import structlog
from django.conf import settings

from gateway import gc_tuning, health, metrics, views
from gateway.context import RequestContext
from gateway.correlation import correlation_id_from
from gateway.errors import GatewayError, render
from gateway.http import ClientDisconnected, Receive, Request, Response, Scope, Send, StreamResponse
from gateway.routing import ROUTE_REASON_HEADER, ROUTED_MODEL_HEADER
from gateway.runtime import Runtime

log = structlog.get_logger("gateway.request")

View = Callable[[Request, RequestContext], Awaitable[Response | StreamResponse]]

POST_ROUTES: dict[str, View] = {
    "/v1/chat/completions": views.chat_completions,
    "/v1/completions": views.completions,
    "/v1/embeddings": views.embeddings,
}
_MODEL_DETAIL = re.compile(r"^/v1/models/(?P<model_id>.+)$")


class GatewayApp:
    def __init__(self) -> None:
        self.runtime = Runtime()

    async def startup(self) -> None:
        await self.runtime.start()
        gc_tuning.tune_for_serving()

    async def shutdown(self) -> None:
        await self.runtime.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.path == "/health":
            await health.liveness().send(send)
            return
        if request.path == "/health/ready":
            await (await health.readiness(self.runtime.redis)).send(send)
            return
        if request.path == "/metrics":
            await metrics.metrics_response(request.headers, settings.AICC_METRICS_TOKEN).send(send)
            return
        ctx = RequestContext(
            correlation_id=correlation_id_from(request.headers),
            runtime=self.runtime,
        )
        structlog.contextvars.bind_contextvars(correlation_id=ctx.correlation_id)
        self.runtime.in_flight += 1
        try:
            await self._handle(request, ctx, send)
        finally:
            await self._after_response(ctx)
            if ctx.ticket is not None:
                await self._settle(ctx)
            self._log_completed(request, ctx)
            self._observe(ctx)
            structlog.contextvars.clear_contextvars()
            self.runtime.in_flight -= 1

    async def _handle(self, request: Request, ctx: RequestContext, send: Send) -> None:
        try:
            response = await self._dispatch(request, ctx)
        except GatewayError as error:
            metrics.observe_error(error, ctx)
            response = Response(error.status, render(error), headers=error.headers)
        except ClientDisconnected:
            ctx.status = 499
            ctx.mark_finished()
            return
        except Exception:
            # A bug of ours: log it with the request's context, answer in OpenAI's shape.
            log.exception("request_failed")
            error = GatewayError(
                500, "The gateway failed to process the request.", code="internal_error"
            )
            response = Response(500, render(error))
        ctx.status = ctx.status or response.status
        response.headers.append(("x-correlation-id", ctx.correlation_id))
        response.headers.extend(ctx.response_headers)
        if ctx.served_model:
            response.headers.append((ROUTED_MODEL_HEADER, ctx.served_model))
        if ctx.route_reason:
            response.headers.append((ROUTE_REASON_HEADER, ctx.route_reason))
        try:
            await response.send(send, request)
        except ClientDisconnected:
            ctx.status = 499
        finally:
            ctx.mark_finished()

    async def _dispatch(self, request: Request, ctx: RequestContext) -> Response | StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in POST_ROUTES:
            _require_method(request, "POST")
            return await POST_ROUTES[path](request, ctx)
        if path == "/v1/models":
            _require_method(request, "GET")
            return await views.list_models(request, ctx)
        match = _MODEL_DETAIL.match(path)
        if match:
            _require_method(request, "GET")
            return await views.retrieve_model(request, ctx, match["model_id"])
        raise GatewayError(
            404, f"Unknown endpoint {request.method} {request.path}.", code="unknown_url"
        )

    async def _after_response(self, ctx: RequestContext) -> None:
        for work in ctx.after_response:
            try:
                await work
            except Exception:  # never at the expense of the settlement that follows
                log.exception("after_response_failed")

    async def _settle(self, ctx: RequestContext) -> None:
        try:
            # Shielded: a server shutting down must not cancel the charge for work done.
            await asyncio.shield(self.runtime.meter.settle(ctx))
        except Exception:  # a bug of ours: the request log line and metrics still follow
            log.exception("settle_failed")

    def _observe(self, ctx: RequestContext) -> None:
        """Metrics, recent-traffic stats and the Langfuse trace: in-memory only, never raises
        into the request."""
        try:
            metrics.observe_request(ctx, cost_usd=ctx.cost_usd)
            self.runtime.recent_stats.note(ctx)
            if self.runtime.langfuse is not None:
                self.runtime.langfuse.note(ctx, cost_usd=ctx.cost_usd)
        except Exception:
            log.exception("observe_failed")

    def _log_completed(self, request: Request, ctx: RequestContext) -> None:
        caller = ctx.caller
        usage = ctx.usage
        log.info(
            "request_completed",
            method=request.method,
            path=request.path,
            status=ctx.status,
            tenant_id=caller.tenant_id if caller else None,
            key_id=caller.record.key_public_id if caller else None,
            model=ctx.requested_model,
            served_model=ctx.served_model,
            # The reason as the header and the ledger carry it ("+fallback" included).
            route_reason=ctx.route_reason or None,
            **ctx.route_fields,
            is_streamed=ctx.is_streamed,
            is_forwarded_early=ctx.is_forwarded_early,
            cache=ctx.cache.status.value if ctx.cache is not None else None,
            latency_ms=round(ctx.elapsed_ms(), 2),
            upstream_latency_ms=_round(ctx.upstream_latency_ms),
            ttfb_ms=_round(ctx.ttfb_ms),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cost_usd=None if ctx.cost_usd is None else str(ctx.cost_usd),
            upstream_cost_usd=ctx.upstream_cost,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _require_method(request: Request, method: str) -> None:
    if request.method != method:
        raise GatewayError(
            405,
            f"Method {request.method} is not allowed here; use {method}.",
            code="method_not_allowed",
        )
