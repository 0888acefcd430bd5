"""Prometheus metrics of the hot path, correct with several worker processes.

Contract. `observe_request(ctx, cost_usd=...)` once per request after settlement;
`observe_rejection(kind, tenant=...)` (or `observe_error(error, ctx)`) when admission refuses;
`observe_breaker(name, state)` on every breaker transition; `metrics_response(headers)` answers
`GET /metrics`. Nothing here does network I/O: a sample is a few in-memory (or mmap) writes.

Several processes. With `PROMETHEUS_MULTIPROC_DIR` set in the environment *before* this
process first imports prometheus_client, every process writes its samples to mmap files in that
directory and `/metrics` (served by any process) merges them: counters and histograms are summed,
the breaker gauge takes the most recent value written by a live process (`livemostrecent`). The
directory must exist and be emptied by whatever starts the server, before the workers start
(bin/run); each process removes its live-gauge files when it stops (`process_stopped`).
Without the variable the metrics are this process's only, which is right for one worker.

Labels and cardinality. `tenant` is the tenant's slug (operators create tenants, so the set is
bounded by the tenant count; requests without a caller are `-`). `model` is the served model,
but a model name is only used as a label once a request for it has succeeded in this process
(clients choose the name, so failing made-up names would otherwise create unbounded series);
until then, and beyond `MAX_MODEL_LABELS` names, it is `other`. The requests counter has
tenants × models × statuses series; latency histograms carry no tenant label.
"""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from gateway.errors import GatewayError, render
from gateway.http import Response

if TYPE_CHECKING:
    from gateway.context import RequestContext

# Uptime for /health/detailed counts from here: gateway.app imports this module at start-up.
PROCESS_STARTED_AT = time.time()

MAX_MODEL_LABELS = 200
MAX_CACHED_CHILDREN = 50_000
NO_TENANT = "-"
OTHER_MODEL = "other"
BREAKER_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
RejectionKind = Literal["rate_limit", "budget"]
REJECTION_KIND_BY_CODE: dict[str, RejectionKind] = {
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "budget",
}

# Total time spans cache hits (ms) to long generations (minutes).
_REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# What the gateway adds on top of the upstream: should stay in the low milliseconds.
_OVERHEAD_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


@dataclass(slots=True)
class RequestSample:
    """What one finished request contributes to the metrics."""

    tenant: str
    model: str
    status: int
    endpoint: str
    latency_s: float
    upstream_latency_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal | None
    is_cache_hit: bool

    @classmethod
    def from_context(cls, ctx: RequestContext, *, cost_usd: Decimal | None) -> RequestSample:
        caller, usage = ctx.caller, ctx.usage
        return cls(
            tenant=caller.record.tenant_slug if caller else NO_TENANT,
            model=ctx.served_model or ctx.requested_model or "",
            status=ctx.status,
            endpoint=ctx.endpoint or "-",
            latency_s=ctx.elapsed_ms() / 1000,
            upstream_latency_s=(
                None if ctx.upstream_latency_ms is None else ctx.upstream_latency_ms / 1000
            ),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost_usd=cost_usd,
            is_cache_hit=ctx.is_cache_hit,
        )


class GatewayMetrics:
    """The metric objects of one process. Use `gateway_metrics()`: one instance per process,
    because in multiprocess mode two instances would write the same mmap keys."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "aicc_requests", "Requests answered, by HTTP status.",
            ["tenant", "model", "status"], registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "aicc_request_duration_seconds", "Whole request, first byte in to settlement.",
            ["endpoint"], buckets=_REQUEST_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.gateway_overhead = Histogram(
            "aicc_gateway_overhead_seconds",
            "Time the gateway added: request duration minus upstream time (forwarded requests).",
            buckets=_OVERHEAD_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "aicc_upstream_duration_seconds", "Upstream time (a stream: until its last event).",
            ["model"], buckets=_REQUEST_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "aicc_tokens", "Tokens metered, by kind (prompt or completion).",
            ["tenant", "model", "kind"], registry=registry,
        )  # fmt: skip
        self.cost = Counter(
            "aicc_cost_usd", "Cost charged in USD (the settled cost of the ledger).",
            ["tenant", "model"], registry=registry,
        )  # fmt: skip
        self.cache_hits = Counter(
            "aicc_cache_hits", "Requests answered from the response cache.",
            ["tenant", "model"], registry=registry,
        )  # fmt: skip
        self.rejections = Counter(
            "aicc_rejections", "Requests refused at admission: rate_limit or budget.",
            ["kind", "tenant"], registry=registry,
        )  # fmt: skip
        self.early_forward_refused = Counter(
            "aicc_early_forward_refused",
            "Requests forwarded while their admission ran and then refused by it: upstream "
            "work that no tenant is charged for.",
            ["tenant"], registry=registry,
        )  # fmt: skip
        self.breaker_state = Gauge(
            "aicc_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["upstream"], registry=registry, multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.langfuse_events = Counter(
            "aicc_langfuse_events", "Langfuse export events by outcome: sent, failed, dropped.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self._model_labels: set[str] = set()
        # Labelled children by (metric, label values): `labels()` re-checks and re-joins the
        # values under a lock on every call, several times per request.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _labelled(self, metric: Counter | Histogram, *values: str) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_CACHED_CHILDREN:
                self._children.clear()  # only the shortcut goes; the series stay registered
            child = self._children[key] = metric.labels(*values)
        return child

    def model_label(self, model: str, *, is_success: bool) -> str:
        if model in self._model_labels:
            return model
        if model and is_success and len(self._model_labels) < MAX_MODEL_LABELS:
            self._model_labels.add(model)
            return model
        return OTHER_MODEL

    def record(self, sample: RequestSample) -> None:
        model = self.model_label(sample.model, is_success=200 <= sample.status < 400)
        tenant = sample.tenant
        self._labelled(self.requests, tenant, model, str(sample.status)).inc()
        self._labelled(self.request_duration, sample.endpoint).observe(sample.latency_s)
        if sample.upstream_latency_s is not None:
            self._labelled(self.upstream_duration, model).observe(sample.upstream_latency_s)
            overhead_s = max(sample.latency_s - sample.upstream_latency_s, 0.0)
            self.gateway_overhead.observe(overhead_s)
        if sample.prompt_tokens:
            self._labelled(self.tokens, tenant, model, "prompt").inc(sample.prompt_tokens)
        if sample.completion_tokens:
            completion = self._labelled(self.tokens, tenant, model, "completion")
            completion.inc(sample.completion_tokens)
        if sample.cost_usd:
            # A float counter: exact to ~1e-15 relative, plenty against µUSD ledger amounts.
            self._labelled(self.cost, tenant, model).inc(float(sample.cost_usd))
        if sample.is_cache_hit:
            self._labelled(self.cache_hits, tenant, model).inc()


_metrics: GatewayMetrics | None = None


def gateway_metrics() -> GatewayMetrics:
    global _metrics
    if _metrics is None:
        _metrics = GatewayMetrics(CollectorRegistry(auto_describe=True))
    return _metrics


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- what the hot path calls ------------------------------------------------------------------
def observe_request(ctx: RequestContext, *, cost_usd: Decimal | None) -> None:
    gateway_metrics().record(RequestSample.from_context(ctx, cost_usd=cost_usd))


def observe_rejection(kind: RejectionKind, *, tenant: str = NO_TENANT) -> None:
    gateway_metrics().rejections.labels(kind, tenant).inc()


def observe_error(error: GatewayError, ctx: RequestContext) -> None:
    """Counts the refusal if it is a rate-limit or budget rejection; other errors are only
    visible in `aicc_requests` by status."""
    kind = REJECTION_KIND_BY_CODE.get(error.code or "")
    if kind is not None:
        observe_rejection(kind, tenant=ctx.caller.record.tenant_slug if ctx.caller else NO_TENANT)


def observe_early_forward_refused(ctx: RequestContext) -> None:
    tenant = ctx.caller.record.tenant_slug if ctx.caller else NO_TENANT
    gateway_metrics().early_forward_refused.labels(tenant).inc()


def observe_breaker(name: str, state: str) -> None:
    """Usable as the breaker's `on_transition` hook via `lambda n, _old, new: ...`."""
    gateway_metrics().breaker_state.labels(name).set(BREAKER_STATES[state])


def observe_langfuse(outcome: Literal["sent", "failed", "dropped"], count: int = 1) -> None:
    if count:
        gateway_metrics().langfuse_events.labels(outcome).inc(count)


def process_stopped() -> None:
    """Drop this process's live gauges from the merged view (call at shutdown)."""
    directory = multiprocess_dir()
    if directory is not None:
        prometheus_multiprocess.mark_process_dead(os.getpid(), directory)


# --- GET /metrics ---------------------------------------------------------------------------
def render_metrics(multiproc_dir: str | None = None) -> tuple[bytes, str]:
    """The exposition text: merged over all processes in multiprocess mode, else this one's."""
    directory = multiproc_dir or multiprocess_dir()
    if directory is None:
        return generate_latest(gateway_metrics().registry), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def is_scrape_allowed(headers: dict[str, str], token: str) -> bool:
    """Open when no token is configured; otherwise `Authorization: Bearer <token>`."""
    if not token:
        return True
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


def metrics_response(headers: dict[str, str], token: str) -> Response:
    if not is_scrape_allowed(headers, token):
        error = GatewayError(401, "A valid metrics token is required.", code="invalid_api_key")
        return Response(401, render(error), headers=[("www-authenticate", "Bearer")])
    body, content_type = render_metrics()
    return Response(200, body, content_type=content_type)
