"""Getting an answer from an upstream despite failures: circuit breaker, retries, fallbacks.

For each target of the model's plan (the primary upstream, then the configured fallbacks):
- the target's breaker is asked first; while it is open the target is skipped at once, with no
  connection attempted;
- connection failures, 502 and 503 are retried with a doubling backoff (nothing has reached the
  client yet: streams are retried only until their status line arrives);
- 5xx answers, timeouts and connection failures count against the breaker; 4xx never do (the
  upstream is up, the request is wrong), except that any answer to a probe closes it.
When every target fails, the client gets the last failure: the upstream's own 5xx body, a
502/504 for transport failures, or 503 `upstream_unavailable` with Retry-After when breakers
refused every target.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from django.conf import settings
from redis.asyncio import Redis

from gateway import metrics
from gateway.breaker import CircuitBreaker, Decision
from gateway.errors import GatewayError
from gateway.targets import Target, Targets
from gateway.upstream import UpstreamReply, UpstreamStream, open_stream, request

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = frozenset({502, 503})


@dataclass(frozen=True, slots=True)
class _Refused:
    retry_after_s: float


class Resilience:
    def __init__(self, redis: Redis, targets: Targets) -> None:
        self.targets = targets
        probe_lease_s = (
            settings.AICC_UPSTREAM_CONNECT_TIMEOUT_S + settings.AICC_UPSTREAM_READ_TIMEOUT_S
        )
        self.breakers = {
            name: CircuitBreaker(
                name,
                redis=redis,
                failure_threshold=settings.AICC_BREAKER_FAILURE_THRESHOLD,
                reset_timeout_s=settings.AICC_BREAKER_RESET_TIMEOUT_S,
                max_reset_timeout_s=max(
                    settings.AICC_BREAKER_MAX_RESET_TIMEOUT_S, settings.AICC_BREAKER_RESET_TIMEOUT_S
                ),
                probe_lease_s=probe_lease_s,
                closed_cache_s=min(
                    settings.AICC_BREAKER_CLOSED_CACHE_S, settings.AICC_BREAKER_RESET_TIMEOUT_S
                ),
                redis_timeout_s=settings.REDIS_TIMEOUT_S,
                on_transition=lambda name, _old, new: metrics.observe_breaker(name, new),
            )
            for name in targets.by_name
        }

    async def post(self, ctx: RequestContext, path: str, payload: dict[str, Any]) -> UpstreamReply:
        result = await self._first_answer(ctx, path, payload, is_stream=False)
        assert isinstance(result, UpstreamReply)
        return result

    async def post_stream(
        self, ctx: RequestContext, path: str, payload: dict[str, Any]
    ) -> UpstreamStream | UpstreamReply:
        """An open stream, or the upstream's error reply when no target streamed."""
        return await self._first_answer(ctx, path, payload, is_stream=True)

    async def _first_answer(
        self, ctx: RequestContext, path: str, payload: dict[str, Any], *, is_stream: bool
    ) -> UpstreamReply | UpstreamStream:
        requested_model = payload["model"]
        last: UpstreamReply | GatewayError | _Refused | None = None
        for position, target in enumerate(self.targets.plan(requested_model)):
            body = orjson.dumps(
                payload if target.model is None else {**payload, "model": target.model}
            )
            outcome = await self._try(ctx, target, path, body, is_stream=is_stream)
            if isinstance(outcome, UpstreamStream) or (
                isinstance(outcome, UpstreamReply) and outcome.status < 500
            ):
                if position > 0:
                    ctx.served_model = target.model or requested_model
                    ctx.route_reason = (
                        f"{ctx.route_reason}+fallback" if ctx.route_reason else "fallback"
                    )
                    log.warning("upstream_fallback_used", target=target.describe(requested_model))
                return outcome
            last = outcome
        if isinstance(last, UpstreamReply):
            return last
        if isinstance(last, GatewayError):
            raise last
        retry_after_s = math.ceil(last.retry_after_s) if last else 1
        raise GatewayError(
            503,
            "The upstream is unavailable (circuit open); try again later.",
            code="upstream_unavailable",
            headers=[("retry-after", str(max(1, retry_after_s)))],
        )

    async def _try(
        self, ctx: RequestContext, target: Target, path: str, body: bytes, *, is_stream: bool
    ) -> UpstreamReply | UpstreamStream | GatewayError | _Refused:
        breaker = self.breakers[target.upstream.name]
        retries = settings.AICC_UPSTREAM_RETRIES
        for attempt in range(retries + 1):
            decision = await breaker.allow()
            if not decision.is_allowed:
                return _Refused(decision.retry_after_s)
            try:
                answer = await self._call(ctx, target, path, body, is_stream=is_stream)
            except GatewayError as error:
                await breaker.record_failure(decision)
                if error.code == "upstream_unreachable" and attempt < retries:
                    await _backoff(attempt)
                    continue
                return error
            except asyncio.CancelledError:
                await breaker.release(decision)
                raise
            if answer.status >= 500:
                await breaker.record_failure(decision)
                reply = await _as_reply(answer)
                if answer.status in RETRYABLE_STATUSES and attempt < retries:
                    await _backoff(attempt)
                    continue
                return reply
            if isinstance(answer, UpstreamStream) and answer.status == 200:
                answer.on_end = functools.partial(_record_stream_end, breaker, decision)
            else:
                await _record_answer(breaker, decision, answer.status)
            return answer
        raise AssertionError("unreachable: the last attempt always returns")

    async def _call(
        self, ctx: RequestContext, target: Target, path: str, body: bytes, *, is_stream: bool
    ) -> UpstreamReply | UpstreamStream:
        if is_stream:
            return await open_stream(
                target.upstream, path, correlation_id=ctx.correlation_id, body=body
            )
        return await request(
            target.upstream, "POST", path, correlation_id=ctx.correlation_id, body=body
        )

    async def snapshot(self) -> dict[str, Any]:
        return {name: await breaker.snapshot() for name, breaker in self.breakers.items()}


async def _record_answer(breaker: CircuitBreaker, decision: Decision, status: int) -> None:
    if status < 400 or decision.is_probe:
        await breaker.record_success(decision)


async def _record_stream_end(breaker: CircuitBreaker, decision: Decision, outcome: str) -> None:
    if outcome == "success":
        await breaker.record_success(decision)
    elif outcome == "failure":
        await breaker.record_failure(decision)
    else:  # the client left: says nothing about the upstream
        await breaker.release(decision)


async def _as_reply(answer: UpstreamReply | UpstreamStream) -> UpstreamReply:
    if isinstance(answer, UpstreamReply):
        return answer
    body = await answer.read()
    answer.close()
    return UpstreamReply(
        status=answer.status,
        body=body,
        content_type=answer.response.headers.get("Content-Type", "application/json"),
        headers=answer.headers,
        latency_ms=answer.elapsed_ms(),
    )


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(settings.AICC_UPSTREAM_RETRY_BACKOFF_S * (2**attempt))
