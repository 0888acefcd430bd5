"""Forwarding while the admission runs: only with ample headroom, nothing sent back before the
admission says yes, a late refusal wins and bills nothing (gateway.metering, gateway.proxy)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import redis
from django.utils import timezone

from billing.models import ModelPrice, UsageRecord
from billing.services import budget_set
from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_create
from tests.fake_upstream import FakeUpstream
from tests.gateway.test_metering_e2e import drain_ledger, fire_together
from tests.live import GatewayProcess

MODEL = "gpt-4o-mini"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
PER_REQUEST = Decimal("0.001")


@pytest.fixture
def priced(transactional_db: None) -> None:
    """A tenth of a cent per request and nothing per token: budgets count requests."""
    ModelPrice.objects.create(
        model=MODEL,
        input_usd_per_1m=Decimal(0),
        output_usd_per_1m=Decimal(0),
        per_request_usd=PER_REQUEST,
        effective_from=timezone.now() - timedelta(days=1),
    )


@pytest.fixture
def start_gateway(
    priced: None, fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str
) -> Iterator[object]:
    """Gateways started after the test's prices exist (they load prices at start)."""
    fake_upstream.reset()  # its counts start at zero for each test
    processes: list[GatewayProcess] = []

    def start(env: dict[str, str] | None = None) -> GatewayProcess:
        process = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url, env=env)
        processes.append(process.start())
        return process

    yield start
    for process in processes:
        process.stop()


def budgeted_key(tenant: Tenant, limit_usd: Decimal, **limits: int) -> IssuedKey:
    issued = api_key_create(tenant=tenant, name="early", **limits)
    budget_set(
        tenant_id=tenant.pk, api_key_id=issued.api_key.pk, limit_usd=limit_usd, period="total"
    )
    return issued


def chat(process: GatewayProcess, key: IssuedKey, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{process.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.raw_key}"},
        json={**CHAT, **extra},
        timeout=30,
    )


def completed_lines(process: GatewayProcess, count: int) -> list[dict[str, object]]:
    """The request log lines of chat requests, once `count` are written (the line of a request
    follows its settlement, after the client has its answer)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            json.loads(line)
            for line in process.log().splitlines()
            if '"request_completed"' in line and '"/v1/chat/completions"' in line
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_ample_headroom_forwards_early_and_meters_every_request_once(
    tenant_a: Tenant, start_gateway: object, fake_upstream: FakeUpstream
) -> None:
    key = budgeted_key(tenant_a, Decimal(1000), rpm_limit=100_000)
    process = start_gateway()  # type: ignore[operator]
    remaining = []
    for number in range(6):
        response = chat(process, key, stream=number == 5)
        assert response.status_code == 200, response.text
        remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
    # Each was admitted by the limiter (its bucket drains faster than these requests come).
    assert remaining == [99_999] * 6
    early = [line["is_forwarded_early"] for line in completed_lines(process, 6)]
    assert early == [False, True, True, True, True, True]  # the first has no headroom known yet
    assert fake_upstream.stats()["llm_calls"] == 6
    drain_ledger()
    records = UsageRecord.objects.filter(api_key_id=key.api_key.pk)
    assert records.count() == 6
    assert sum(record.cost_usd for record in records) == 6 * PER_REQUEST


def test_near_a_limit_nothing_reaches_the_upstream_before_admission(
    tenant_a: Tenant, start_gateway: object, fake_upstream: FakeUpstream
) -> None:
    key = budgeted_key(tenant_a, Decimal(1000), rpm_limit=20)  # under 100 requests of room
    process = start_gateway()  # type: ignore[operator]
    statuses = [chat(process, key).status_code for _ in range(23)]
    assert statuses == [200] * 20 + [429] * 3
    assert fake_upstream.stats()["llm_calls"] == 20  # the refused never left the gateway
    assert not any(line["is_forwarded_early"] for line in completed_lines(process, 23))


@pytest.mark.parametrize("is_stream", [False, True])
def test_a_refusal_after_an_early_forward_wins_and_bills_nothing(
    tenant_a: Tenant,
    start_gateway: object,
    fake_upstream: FakeUpstream,
    redis_client: redis.Redis,
    is_stream: bool,
) -> None:
    """Another process used up the headroom within the second: the answer already bought is
    dropped, the client gets the refusal, the ledger gets nothing."""
    key = budgeted_key(tenant_a, Decimal(10))
    process = start_gateway()  # type: ignore[operator]
    assert chat(process, key).status_code == 200  # headroom known: $9.999 left
    (spent_key,) = redis_client.keys(f"aicc:budget:key:{key.api_key.pk}:*:spent")
    redis_client.set(spent_key, 10_000_000)  # $10 in micro-dollars: nothing left
    refused = chat(process, key, stream=is_stream)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert fake_upstream.stats()["llm_calls"] == 2  # it had been forwarded
    lines = completed_lines(process, 2)
    assert [line["is_forwarded_early"] for line in lines] == [False, True]
    assert lines[-1]["status"] == 429
    assert '"early_forward_refused"' in process.log()
    scraped = httpx.get(f"{process.url}/metrics", timeout=10).text
    assert 'aicc_early_forward_refused_total{tenant="tenant-a"} 1.0' in scraped
    drain_ledger()
    assert UsageRecord.objects.filter(api_key_id=key.api_key.pk).count() == 1
    # Its headroom is forgotten: the next request waits for its admission again.
    assert chat(process, key).status_code == 429
    assert fake_upstream.stats()["llm_calls"] == 2


def test_a_busy_process_waits_for_the_admission(
    tenant_a: Tenant, start_gateway: object, fake_upstream: FakeUpstream
) -> None:
    """With its other requests filling the wait, early forwarding would only cost a task."""
    key = budgeted_key(tenant_a, Decimal(1000))
    process = start_gateway()  # type: ignore[operator]
    assert chat(process, key).status_code == 200  # headroom known
    responses = asyncio.run(fire_together([process.url], key.raw_key, 40))
    assert [response.status_code for response in responses] == [200] * 40
    early = [line["is_forwarded_early"] for line in completed_lines(process, 41)[1:]]
    assert len(early) == 40
    assert early.count(True) <= 10, early  # only while at most 4 were in flight


def test_early_forwarding_can_be_switched_off(
    tenant_a: Tenant, start_gateway: object, fake_upstream: FakeUpstream
) -> None:
    key = budgeted_key(tenant_a, Decimal(1000))
    process = start_gateway({"AICC_EARLY_FORWARD": "false"})  # type: ignore[operator]
    assert all(chat(process, key).status_code == 200 for _ in range(3))
    assert not any(line["is_forwarded_early"] for line in completed_lines(process, 3))
