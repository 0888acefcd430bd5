"""Optional export of one Langfuse trace per LLM request, batched and off the hot path.

On when AICC_LANGFUSE_HOST, _PUBLIC_KEY and _SECRET_KEY are all set (`from_settings` returns
None otherwise). `note(ctx, cost_usd=...)` only appends two events (a `trace-create` and a
`generation-create`) to an in-process bounded queue; when the queue is full the oldest events
are dropped and counted. `run_forever` POSTs batches to `{host}/api/public/ingestion` (basic
auth public:secret) every `flush_interval_s`, or as soon as `batch_size` events wait. A failed
batch (HTTP error, timeout, connection refused, events rejected in a 207) is logged, counted and
dropped, never retried: export is best-effort and must neither grow memory nor touch requests.

What is sent: metadata only — model, tokens, cost, latency, status, tenant id and slug, key
public id, endpoint, correlation id. The request's messages are sent (as the trace input) only
when AICC_LANGFUSE_INCLUDE_CONTENT is on; responses are never kept, so never sent. The trace id
is the metering request id, i.e. the ledger row's event_id, so a trace and its bill join.

Langfuse deduplicates by the envelope id; the batch format (type, id, timestamp, body) is the
legacy ingestion API, which Langfuse still serves.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import structlog
from django.conf import settings

from gateway import metrics

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)

INGESTION_PATH = "/api/public/ingestion"
# Content the request names, copied only with AICC_LANGFUSE_INCLUDE_CONTENT.
_CONTENT_FIELDS = ("messages", "prompt", "input")


@dataclass(frozen=True, slots=True)
class LangfuseConfig:
    host: str
    public_key: str
    secret_key: str
    is_content_included: bool = False
    queue_size: int = 10_000
    batch_size: int = 100
    flush_interval_s: float = 1.0
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls) -> LangfuseConfig | None:
        host = settings.AICC_LANGFUSE_HOST
        public_key = settings.AICC_LANGFUSE_PUBLIC_KEY
        secret_key = settings.AICC_LANGFUSE_SECRET_KEY
        if not (host and public_key and secret_key):
            return None
        return cls(
            host=host.rstrip("/"),
            public_key=public_key,
            secret_key=secret_key,
            is_content_included=settings.AICC_LANGFUSE_INCLUDE_CONTENT,
            queue_size=settings.AICC_LANGFUSE_QUEUE_SIZE,
            batch_size=settings.AICC_LANGFUSE_BATCH_SIZE,
            flush_interval_s=settings.AICC_LANGFUSE_FLUSH_INTERVAL_S,
        )


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


class LangfuseExporter:
    def __init__(self, config: LangfuseConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.queue: deque[dict[str, Any]] = deque()
        self.sent_events = 0
        self.failed_events = 0
        self.dropped_events = 0
        self._wake = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls) -> LangfuseExporter | None:
        config = LangfuseConfig.from_settings()
        return None if config is None else cls(config)

    # --- the hot path: no I/O -----------------------------------------------------------------
    def note(self, ctx: RequestContext, *, cost_usd: Decimal | None) -> None:
        """Queue the trace of a finished LLM request; other requests (model listings, refused
        keys) are not traced."""
        if ctx.caller is None or not ctx.endpoint:
            return
        for event in self.events_for(ctx, cost_usd=cost_usd):
            if len(self.queue) >= self.config.queue_size:
                self.queue.popleft()
                self.dropped_events += 1
                metrics.observe_langfuse("dropped")
            self.queue.append(event)
        if len(self.queue) >= self.config.batch_size:
            self._wake.set()

    def events_for(self, ctx: RequestContext, *, cost_usd: Decimal | None) -> list[dict[str, Any]]:
        caller = ctx.caller
        assert caller is not None
        now, elapsed_ms = self.clock(), ctx.elapsed_ms()
        started = now - elapsed_ms / 1000
        trace_id = ctx.ticket.request_id if ctx.ticket else uuid.uuid4().hex
        usage = ctx.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        is_error = ctx.status >= 400
        metadata = {
            "tenant_id": caller.tenant_id,
            "tenant_slug": caller.record.tenant_slug,
            "key_id": caller.record.key_public_id,
            "endpoint": ctx.endpoint,
            "status": ctx.status,
            "correlation_id": ctx.correlation_id,
            "requested_model": ctx.requested_model,
            "route_reason": ctx.route_reason,
            "is_streamed": ctx.is_streamed,
            "is_cache_hit": ctx.is_cache_hit,
            "latency_ms": round(elapsed_ms, 2),
            "upstream_latency_ms": ctx.upstream_latency_ms,
        }
        trace: dict[str, Any] = {
            "id": trace_id,
            "timestamp": _iso(started),
            "name": ctx.endpoint,
            "userId": str(caller.tenant_id),
            "metadata": metadata,
            "tags": [caller.record.tenant_slug],
        }
        generation: dict[str, Any] = {
            "id": f"{trace_id}-generation",
            "traceId": trace_id,
            "name": "upstream",
            "startTime": _iso(started),
            "endTime": _iso(now),
            "model": ctx.served_model or ctx.requested_model,
            "usageDetails": {
                "input": prompt_tokens,
                "output": completion_tokens,
                "total": prompt_tokens + completion_tokens,
            },
            "level": "ERROR" if is_error else "DEFAULT",
            "statusMessage": f"HTTP {ctx.status}" if is_error else None,
            "metadata": {"correlation_id": ctx.correlation_id},
        }
        if cost_usd is not None:
            generation["costDetails"] = {"total": float(cost_usd)}
        if ctx.ttfb_ms is not None:
            generation["completionStartTime"] = _iso(started + ctx.ttfb_ms / 1000)
        if self.config.is_content_included and ctx.payload:
            content = {name: ctx.payload[name] for name in _CONTENT_FIELDS if name in ctx.payload}
            trace["input"] = generation["input"] = content
        timestamp = _iso(now)
        return [
            {"id": uuid.uuid4().hex, "type": "trace-create", "timestamp": timestamp, "body": trace},
            {
                "id": uuid.uuid4().hex,
                "type": "generation-create",
                "timestamp": timestamp,
                "body": generation,
            },
        ]

    # --- the background task ----------------------------------------------------------------
    async def run_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.flush_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send everything queued now, one batch at a time. Never raises."""
        while self.queue:
            count = min(len(self.queue), self.config.batch_size)
            batch = [self.queue.popleft() for _ in range(count)]
            await self._send(batch)

    async def close(self) -> None:
        """Last flush, bounded by one timeout, then close the HTTP session."""
        try:
            async with asyncio.timeout(self.config.timeout_s):
                await self.flush()
        except TimeoutError:
            log.warning("langfuse_final_flush_timed_out", pending_events=len(self.queue))
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers={"authorization": _basic_auth(self.config)},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                json_serialize=lambda value: orjson.dumps(value).decode(),
            )
        return self._http

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        url = self.config.host + INGESTION_PATH
        try:
            async with self._session().post(url, json={"batch": batch}) as response:
                status = response.status
                reply = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count_failed(len(batch), error=type(exc).__name__)
            return
        if status not in (200, 201, 207):
            self._count_failed(len(batch), error=f"HTTP {status}")
            return
        rejected = _rejected_count(reply) if status == 207 else 0
        if rejected:
            self._count_failed(rejected, error="events rejected")
        self.sent_events += len(batch) - rejected
        metrics.observe_langfuse("sent", len(batch) - rejected)

    def _count_failed(self, count: int, *, error: str) -> None:
        self.failed_events += count
        metrics.observe_langfuse("failed", count)
        log.warning("langfuse_export_failed", error=error, events=count)


def _basic_auth(config: LangfuseConfig) -> str:
    credentials = f"{config.public_key}:{config.secret_key}".encode()
    return "Basic " + base64.b64encode(credentials).decode()


def _rejected_count(reply: bytes) -> int:
    try:
        body = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return 0
    errors = body.get("errors") if isinstance(body, dict) else None
    return len(errors) if isinstance(errors, list) else 0
