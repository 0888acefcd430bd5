"""The response cache through a live gateway process: the issue's acceptance criteria.

Tenant A and outsider tenant B send the same deterministic prompt; repeats are answered from
the cache (same bytes, not sent upstream, zero-cost hits in the ledger); a streamed repeat is
replayed as SSE the openai SDK reads.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from django.utils import timezone

from billing.models import ModelPrice, UsageRecord
from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_create, tenant_create
from tests.fake_upstream import FakeUpstream
from tests.gateway.test_metering_e2e import drain_ledger
from tests.live import GatewayProcess

CHAT = "/v1/chat/completions"


@pytest.fixture
def key_b(transactional_db: None) -> IssuedKey:
    tenant_b = tenant_create(slug="tenant-b", name="Tenant B")
    return api_key_create(tenant=tenant_b, name="key B")


def deterministic_chat(**overrides: Any) -> dict[str, Any]:
    # A fresh prompt per test: the live gateway's Redis outlives a single test's entries.
    prompt = f"list three colours {uuid.uuid4().hex}"
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, **overrides}  # fmt: skip


def post(
    gateway: GatewayProcess, key: IssuedKey, payload: dict[str, Any], **headers: str
) -> httpx.Response:
    correlation_id = uuid.uuid4().hex
    response = httpx.post(
        f"{gateway.url}{CHAT}",
        json=payload,
        headers={"Authorization": f"Bearer {key.raw_key}", "X-Correlation-ID": correlation_id,
                 **headers},
        timeout=10,
    )  # fmt: skip
    gateway.completed_lines(correlation_id)  # settled and metered
    return response


def test_repeat_is_a_hit_with_the_same_body_and_tenant_b_misses(
    gateway: GatewayProcess, fake_upstream: FakeUpstream, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    payload = deterministic_chat()
    calls_before = fake_upstream.stats()["llm_calls"]
    first = post(gateway, key_a, payload)
    repeat = post(gateway, key_a, payload)
    outsider = post(gateway, key_b, payload)
    assert [r.status_code for r in (first, repeat, outsider)] == [200, 200, 200]
    assert first.headers["x-aicc-cache"] == "MISS"
    assert repeat.headers["x-aicc-cache"] == "HIT"
    assert repeat.content == first.content
    assert outsider.headers["x-aicc-cache"] == "MISS"
    assert fake_upstream.stats()["llm_calls"] == calls_before + 2  # the hit was not sent


def test_non_deterministic_and_no_store_requests_bypass_the_cache(
    gateway: GatewayProcess, fake_upstream: FakeUpstream, key_a: IssuedKey
) -> None:
    warm = deterministic_chat(temperature=0.7)
    assert post(gateway, key_a, warm).headers["x-aicc-cache"] == "BYPASS"
    assert post(gateway, key_a, warm).headers["x-aicc-cache"] == "BYPASS"
    cold = deterministic_chat()
    assert (
        post(gateway, key_a, cold, **{"X-AICC-Cache": "no-store"}).headers["x-aicc-cache"]
        == "BYPASS"
    )
    assert post(gateway, key_a, cold).headers["x-aicc-cache"] == "MISS"


def test_hit_is_in_the_ledger_as_a_zero_cost_cache_hit(
    django_db_setup: None, fake_upstream: FakeUpstream, key_a: IssuedKey, redis_url: str
) -> None:
    # A per-request fee: a hit must not pay even that. The gateway loads prices at start.
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        input_usd_per_1m=Decimal(1),
        output_usd_per_1m=Decimal(2),
        per_request_usd=Decimal("0.01"),
        effective_from=timezone.now() - timedelta(minutes=1),
    )
    gateway = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
    try:
        payload = deterministic_chat()
        miss = post(gateway, key_a, payload)
        hit = post(gateway, key_a, payload)
        (miss_line,) = gateway.completed_lines(miss.headers["x-correlation-id"])
        (hit_line,) = gateway.completed_lines(hit.headers["x-correlation-id"])
    finally:
        gateway.stop()
    assert (miss.headers["x-aicc-cache"], hit.headers["x-aicc-cache"]) == ("MISS", "HIT")
    drain_ledger()
    records = {
        r.is_cache_hit: r for r in UsageRecord.objects.filter(tenant_id=key_a.api_key.tenant_id)
    }
    assert records[False].cost_usd > Decimal("0.01")
    assert records[True].cost_usd == Decimal(0)
    # The request log shows the same charge as the ledger.
    assert Decimal(miss_line["cost_usd"]) == records[False].cost_usd
    assert Decimal(hit_line["cost_usd"]) == 0
    assert (records[True].prompt_tokens, records[True].completion_tokens) == (0, 0)
    assert records[True].status_code == 200


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_repeat_is_replayed_as_sse_the_sdk_reads(
    gateway: GatewayProcess, fake_upstream: FakeUpstream, key_a: IssuedKey, include_usage: bool
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key_a.raw_key, max_retries=0)
    payload = deterministic_chat(max_tokens=12)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    def stream_once() -> tuple[str, list[Any], str]:
        raw = client.chat.completions.with_raw_response.create(**payload, stream=True, **options)
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return raw.headers["x-aicc-cache"], chunks, text

    calls_before = fake_upstream.stats()["llm_calls"]
    first_status, first_chunks, first_text = stream_once()  # streamed miss fills the cache
    repeat_status, repeat_chunks, repeat_text = stream_once()
    assert (first_status, repeat_status) == ("MISS", "HIT")
    assert repeat_text == first_text and first_text.startswith("echo: list three colours")
    assert fake_upstream.stats()["llm_calls"] == calls_before + 1
    assert [c.choices[0].finish_reason for c in repeat_chunks if c.choices][-1] == "stop"
    if include_usage:
        assert repeat_chunks[-1].usage == first_chunks[-1].usage
    else:
        assert all(c.usage is None for c in repeat_chunks)
    # ...and the streamed answer also serves the same request without streaming.
    plain = client.chat.completions.with_raw_response.create(**payload)
    assert plain.headers["x-aicc-cache"] == "HIT"
    assert plain.parse().choices[0].message.content == first_text


def test_a_tenant_can_switch_its_cache_off_and_every_request_then_bypasses(
    gateway: GatewayProcess, key_a: IssuedKey, tenant_a: Tenant
) -> None:
    from tenants.services import tenant_update

    tenant_update(tenant=tenant_a, is_response_cache_enabled=False)
    time.sleep(0.6)  # the change reaches every process within 1 s
    body = {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": "switch me off"}],
    }
    headers = {"Authorization": f"Bearer {key_a.raw_key}"}
    url = f"{gateway.url}/v1/chat/completions"
    first = httpx.post(url, headers=headers, json=body)
    second = httpx.post(url, headers=headers, json=body)
    assert [first.headers["x-aicc-cache"], second.headers["x-aicc-cache"]] == ["BYPASS", "BYPASS"]
