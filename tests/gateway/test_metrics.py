"""Prometheus metrics: what one request adds, multiprocess merging, the /metrics token."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from billing.models import ModelPrice, UsageRecord
from billing.tasks import drain_usage_events
from gateway import metrics
from gateway.auth import Caller
from gateway.context import RequestContext, Usage
from gateway.errors import GatewayError
from tenants.selectors import CredentialRecord, Limits
from tenants.services import api_key_create, tenant_create
from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_NO_LIMITS = Limits(rpm=None, tpm=None, max_concurrency=None)


def caller_for(tenant_slug: str, tenant_id: int = 1) -> Caller:
    record = CredentialRecord(
        tenant_id=tenant_id, tenant_slug=tenant_slug, tenant_status="active", key_id=7,
        key_public_id="k" * 12, key_name="key", is_admin=False, allowed_models=None,
        expires_at=None, revoked_at=None, key_limits=_NO_LIMITS, tenant_limits=_NO_LIMITS,
        secrets=(),
    )  # fmt: skip
    return Caller(record=record, budgets=(), secret_id=1, deprecated_at=None, deprecated_until=None)


def finished_context(
    tenant_slug: str, model: str, *, status: int = 200, is_cache_hit: bool = False
) -> RequestContext:
    ctx = RequestContext(correlation_id="corr-1", runtime=None)  # type: ignore[arg-type]
    ctx.caller = caller_for(tenant_slug)
    ctx.endpoint = "/v1/chat/completions"
    ctx.requested_model = ctx.served_model = model
    ctx.status = status
    ctx.usage = Usage(prompt_tokens=11, completion_tokens=7)
    ctx.upstream_latency_ms = 0.0
    ctx.is_cache_hit = is_cache_hit
    return ctx


def value(name: str, **labels: str) -> float:
    found = metrics.gateway_metrics().registry.get_sample_value(name, labels)
    return found or 0.0


SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def parsed(text: str) -> dict[SampleKey, float]:
    return {
        key(sample.name, **sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_request_adds_its_count_tokens_cost_cache_hit_and_latencies() -> None:
    labels = {"tenant": "tenant-m1", "model": "gpt-m1"}
    before_overhead = value("aicc_gateway_overhead_seconds_count")
    ctx = finished_context("tenant-m1", "gpt-m1", is_cache_hit=True)

    metrics.observe_request(ctx, cost_usd=Decimal("0.000250"))
    metrics.observe_request(ctx, cost_usd=Decimal("0.000125"))

    assert value("aicc_requests_total", **labels, status="200") == 2
    assert value("aicc_tokens_total", **labels, kind="prompt") == 22
    assert value("aicc_tokens_total", **labels, kind="completion") == 14
    assert value("aicc_cost_usd_total", **labels) == pytest.approx(0.000375, abs=1e-12)
    assert value("aicc_cache_hits_total", **labels) == 2
    assert value("aicc_upstream_duration_seconds_count", model="gpt-m1") == 2
    assert value("aicc_gateway_overhead_seconds_count") == before_overhead + 2
    assert value("aicc_request_duration_seconds_count", endpoint="/v1/chat/completions") >= 2


def test_a_model_name_becomes_a_label_only_after_a_request_for_it_succeeded() -> None:
    made_up = finished_context("tenant-m2", "made-up-model-x", status=404)
    before_other = value("aicc_requests_total", tenant="tenant-m2", model="other", status="404")

    metrics.observe_request(made_up, cost_usd=None)
    metrics.observe_request(finished_context("tenant-m2", "made-up-model-x"), cost_usd=None)
    metrics.observe_request(made_up, cost_usd=None)

    assert value("aicc_requests_total", tenant="tenant-m2", model="other", status="404") == (
        before_other + 1
    )
    assert value("aicc_requests_total", tenant="tenant-m2", model="made-up-model-x", status="404")


def test_rate_limit_and_budget_refusals_are_counted_by_kind() -> None:
    ctx = finished_context("tenant-m3", "gpt-m3", status=429)

    metrics.observe_error(GatewayError(429, "slow down", code="rate_limit_exceeded"), ctx)
    metrics.observe_error(GatewayError(429, "no money", code="insufficient_quota"), ctx)
    metrics.observe_error(GatewayError(429, "no money", code="insufficient_quota"), ctx)
    metrics.observe_error(GatewayError(400, "bad", code="invalid_value"), ctx)

    assert value("aicc_rejections_total", kind="rate_limit", tenant="tenant-m3") == 1
    assert value("aicc_rejections_total", kind="budget", tenant="tenant-m3") == 2


def test_breaker_state_gauge_follows_transitions() -> None:
    metrics.observe_breaker("upstream-m4", "open")
    assert value("aicc_breaker_state", upstream="upstream-m4") == 2
    metrics.observe_breaker("upstream-m4", "half_open")
    assert value("aicc_breaker_state", upstream="upstream-m4") == 1
    metrics.observe_breaker("upstream-m4", "closed")
    assert value("aicc_breaker_state", upstream="upstream-m4") == 0


def test_rendered_metrics_parse_as_prometheus_text() -> None:
    metrics.observe_request(finished_context("tenant-m5", "gpt-m5"), cost_usd=Decimal("0.01"))
    body, content_type = metrics.render_metrics()

    samples = parsed(body.decode())

    assert content_type.startswith("text/plain")
    assert (
        samples[key("aicc_requests_total", model="gpt-m5", status="200", tenant="tenant-m5")] == 1
    )


_WRITER = """
import sys
from decimal import Decimal
from gateway import metrics

requests, breaker_state = int(sys.argv[1]), sys.argv[2]
for index in range(requests):
    metrics.gateway_metrics().record(metrics.RequestSample(
        tenant="tenant-a", model="gpt-x", status=200, endpoint="/v1/chat/completions",
        latency_s=0.100, upstream_latency_s=0.090, prompt_tokens=10, completion_tokens=5,
        cost_usd=Decimal("0.000123"), is_cache_hit=index % 2 == 0,
    ))
metrics.observe_rejection("rate_limit", tenant="tenant-a")
metrics.observe_breaker("litellm", breaker_state)
print(__import__("os").getpid())
"""


def _write_in_process(directory: Path, requests: int, breaker_state: str) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(requests), breaker_state],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(done.stdout.strip())


def test_render_sums_what_several_processes_wrote(tmp_path: Path) -> None:
    _write_in_process(tmp_path, requests=3, breaker_state="open")
    second_pid = _write_in_process(tmp_path, requests=4, breaker_state="closed")

    samples = parsed(metrics.render_metrics(str(tmp_path))[0].decode())
    labels = {"model": "gpt-x", "tenant": "tenant-a"}

    assert samples[key("aicc_requests_total", **labels, status="200")] == 7
    assert samples[key("aicc_tokens_total", **labels, kind="prompt")] == 70
    assert samples[key("aicc_cost_usd_total", **labels)] == pytest.approx(7 * 0.000123, abs=1e-12)
    assert samples[key("aicc_cache_hits_total", **labels)] == 2 + 2
    assert samples[key("aicc_rejections_total", kind="rate_limit", tenant="tenant-a")] == 2
    assert samples[key("aicc_gateway_overhead_seconds_count")] == 7
    assert samples[key("aicc_upstream_duration_seconds_count", model="gpt-x")] == 7
    # The most recent write of a live process wins; a stopped process's state is dropped.
    assert samples[key("aicc_breaker_state", upstream="litellm")] == 0
    multiprocess.mark_process_dead(second_pid, str(tmp_path))
    samples = parsed(metrics.render_metrics(str(tmp_path))[0].decode())
    assert samples[key("aicc_breaker_state", upstream="litellm")] == 2


def test_metrics_are_open_without_a_token() -> None:
    assert metrics.metrics_response({}, token="").status == 200


def test_metrics_need_the_bearer_token_when_one_is_set() -> None:
    token = "scrape-token-0123456789"

    assert metrics.metrics_response({}, token=token).status == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert metrics.metrics_response(wrong, token=token).status == 401
    right = metrics.metrics_response({"authorization": f"Bearer {token}"}, token=token)
    assert right.status == 200 and b"aicc_" in right.body


# --- end to end: /metrics of two live gateway processes against the ledger --------------------
E2E_MODEL = "gpt-4o-mini"


def _scrape(url: str) -> dict[SampleKey, float]:
    return parsed(httpx.get(f"{url}/metrics", timeout=10).text)


def _tenant_total(samples: dict[SampleKey, float], name: str, tenant: str, **labels: str) -> float:
    return sum(
        count
        for (sample_name, sample_labels), count in samples.items()
        if sample_name == name
        and ("tenant", tenant) in sample_labels
        and all((label, value) in sample_labels for label, value in labels.items())
    )


def test_metrics_of_two_gateway_processes_agree_with_the_ledger(
    tmp_path: Path,
    transactional_db: None,
    fake_upstream: FakeUpstream,
    redis_client: object,
    redis_url: str,
) -> None:
    ModelPrice.objects.create(
        model=E2E_MODEL, input_usd_per_1m=Decimal("0.15"), output_usd_per_1m=Decimal("0.60"),
        per_request_usd=Decimal("0.0001"), effective_from=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    tenant = tenant_create(slug="tenant-metrics", name="Tenant Metrics")
    issued = api_key_create(tenant=tenant, name="metrics key")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    processes = [
        GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url, env=env).start()
        for _ in range(2)
    ]
    try:
        headers = {"Authorization": f"Bearer {issued.raw_key}"}
        for index in range(10):
            body = {"model": E2E_MODEL, "messages": [{"role": "user", "content": f"hi {index}"}]}
            if index % 3 == 0:
                body["stream"] = True
            url = processes[index % 2].url
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
            assert reply.status_code == 200
        deadline = time.monotonic() + 10
        while True:  # metrics and the usage event are written just after the last byte
            drain_usage_events(budget_s=5)
            ledger = UsageRecord.objects.filter(tenant_id=tenant.pk)
            samples = _scrape(processes[1].url)
            requests = _tenant_total(samples, "aicc_requests_total", "tenant-metrics")
            if (ledger.count() == 10 and requests == 10) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for process in processes:
            process.stop()

    totals = ledger.aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost_usd")
    )
    assert ledger.count() == requests == 10
    tokens = "aicc_tokens_total"
    assert _tenant_total(samples, tokens, "tenant-metrics", kind="prompt") == totals["prompt"]
    assert (
        _tenant_total(samples, tokens, "tenant-metrics", kind="completion")
        == (totals["completion"])
    )
    assert _tenant_total(samples, "aicc_cost_usd_total", "tenant-metrics") == pytest.approx(
        float(totals["cost"]), abs=1e-9
    )
