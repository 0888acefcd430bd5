"""Limits and budgets are hard ceilings across gateway processes, and every request is metered.

Fires many requests at once at two live gateway processes sharing PostgreSQL/SQLite and Redis.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings
from django.utils import timezone

from billing.consumer import UsageConsumer
from billing.models import ModelPrice, UsageRecord
from billing.services import budget_set
from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_create
from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess, RedisServer

DOLLAR_MODEL = "gpt-4o-mini"
CHAT = {"model": DOLLAR_MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}


@pytest.fixture
def dollar_per_request(transactional_db: None) -> None:
    """A price of exactly $1 per request and nothing per token, so budgets count requests."""
    ModelPrice.objects.create(
        model=DOLLAR_MODEL,
        input_usd_per_1m=Decimal(0),
        output_usd_per_1m=Decimal(0),
        per_request_usd=Decimal(1),
        effective_from=timezone.now() - timedelta(days=1),
    )


@pytest.fixture
def two_gateways(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_client: object, redis_url: str
) -> Iterator[list[GatewayProcess]]:
    """Two gateway processes started after the test's data exists (they load prices at start)."""
    processes: list[GatewayProcess] = []

    def start() -> list[GatewayProcess]:
        processes.extend(
            GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
            for _ in range(2)
        )
        return processes

    yield start  # type: ignore[misc]
    for process in processes:
        process.stop()


async def fire_together(
    urls: list[str], raw_key: str, count: int, payload: dict[str, object] = CHAT
) -> list[httpx.Response]:
    """`count` requests released at the same moment, spread over the processes."""
    release = asyncio.Event()
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(index: int) -> httpx.Response:
            await release.wait()
            return await client.post(
                f"{urls[index % len(urls)]}/v1/chat/completions",
                headers={"Authorization": f"Bearer {raw_key}"},
                json=payload,
            )

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*tasks)


def drain_ledger(redis_url: str | None = None) -> None:
    """What the Celery beat task does every few seconds, done now."""
    client = redis.Redis.from_url(redis_url or settings.REDIS_URL)
    try:
        UsageConsumer(client).drain(budget_s=10)
    finally:
        client.close()


def test_budget_with_room_for_ten_admits_exactly_ten_of_200_twenty_times(
    dollar_per_request: None, tenant_a: Tenant, two_gateways: object, redis_client: object
) -> None:
    issued = api_key_create(tenant=tenant_a, name="budgeted")
    processes = two_gateways()  # type: ignore[operator]
    urls = [p.url for p in processes]
    for round_number in range(20):
        key = api_key_create(tenant=tenant_a, name=f"round {round_number}")
        budget_set(
            tenant_id=tenant_a.pk,
            api_key_id=key.api_key.pk,
            limit_usd=Decimal(10),
            period="total",
        )
        responses = asyncio.run(fire_together(urls, key.raw_key, 200))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 10, (round_number, sorted(set(statuses)))
        assert statuses.count(429) == 190, [r.text for r in responses if r.status_code != 429]
        refusal = next(r for r in responses if r.status_code == 429).json()["error"]
        assert refusal["code"] == "insufficient_quota"
        assert "API key's total budget" in refusal["message"]
    drain_ledger()
    assert UsageRecord.objects.filter(tenant_id=tenant_a.pk).count() == 200
    per_key = {}
    for record in UsageRecord.objects.filter(tenant_id=tenant_a.pk):
        per_key[record.api_key_id] = per_key.get(record.api_key_id, Decimal(0)) + record.cost_usd
    assert all(spent <= Decimal(10) for spent in per_key.values())
    assert issued.api_key.pk not in per_key


def test_sixty_per_minute_admits_exactly_sixty_of_240_over_two_processes(
    tenant_a: Tenant, two_gateways: object
) -> None:
    key = api_key_create(tenant=tenant_a, name="rpm", rpm_limit=60)
    processes = two_gateways()  # type: ignore[operator]
    responses = asyncio.run(fire_together([p.url for p in processes], key.raw_key, 240))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 60
    assert statuses.count(429) == 180
    rejected = [r for r in responses if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in rejected)
    assert all(int(r.headers["retry-after"]) >= 1 for r in rejected)


def test_remaining_counts_down_and_retry_after_is_honoured(
    tenant_a: Tenant, gateway: GatewayProcess, redis_client: object
) -> None:
    key = api_key_create(tenant=tenant_a, name="countdown", rpm_limit=3)
    headers = {"Authorization": f"Bearer {key.raw_key}"}
    url = f"{gateway.url}/v1/chat/completions"
    remaining = []
    for _ in range(3):
        response = httpx.post(url, headers=headers, json=CHAT)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert "ratelimit-policy" in response.headers and "ratelimit" in response.headers
        remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    refused = httpx.post(url, headers=headers, json=CHAT)
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 20
    time.sleep(retry_after)
    assert httpx.post(url, headers=headers, json=CHAT).status_code == 200


def test_a_stream_cut_after_ten_chunks_is_billed_for_what_was_generated(
    key_a: IssuedKey, gateway: GatewayProcess, redis_client: object, fake_upstream: FakeUpstream
) -> None:
    payload = {
        "model": "fault-slow-stream",
        "messages": [{"role": "user", "content": "count words please"}],
        "max_tokens": 5000,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key_a.raw_key}", "X-Correlation-ID": "cut-stream"},
        json=payload,
        timeout=30,
    ) as response:
        events = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                events += 1
            if events == 10:
                break
    deadline = timezone.now() + timedelta(seconds=10)
    records = []
    while not records and timezone.now() < deadline:
        drain_ledger()
        records = list(UsageRecord.objects.filter(correlation_id="cut-stream"))
    (record,) = records
    assert record.is_streamed
    # What was generated before the cut (10 chunks and the few in flight), not all 5,000 words:
    # the gateway stopped reading and dropped the upstream connection.
    assert 9 <= record.completion_tokens < 500
    assert record.prompt_tokens > 0


def test_budgets_fail_closed_without_redis_and_recover_from_the_ledger(
    dollar_per_request: None,
    tenant_a: Tenant,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
) -> None:
    """Redis stopped: budget-gated requests get 503, never an unmetered 200. Redis back (empty,
    like after a restart without persistence): served again without restarting the gateway,
    and the lost budget counter is rebuilt from the ledger."""
    key = api_key_create(tenant=tenant_a, name="outage")
    budget_set(
        tenant_id=tenant_a.pk, api_key_id=key.api_key.pk, limit_usd=Decimal(3), period="daily"
    )
    process = GatewayProcess(
        upstream_url=fake_upstream.url,
        redis_url=redis_server.url,
        env={"AICC_REDIS_TIMEOUT_S": "0.5"},
    ).start()
    url = f"{process.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key.raw_key}"}
    try:
        assert [httpx.post(url, headers=headers, json=CHAT).status_code for _ in range(2)] == [
            200,
            200,
        ]
        drain_ledger(redis_server.url)  # $2 of $3 now in the ledger
        redis_server.stop()
        refused = httpx.post(url, headers=headers, json=CHAT, timeout=10)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "metering_unavailable"
        redis_server.start()  # same port, no data: counters and the stream are gone
        deadline = time.monotonic() + 5
        statuses = []
        while time.monotonic() < deadline:
            response = httpx.post(url, headers=headers, json=CHAT, timeout=10)
            if response.status_code != 503:
                statuses.append(response.status_code)
                break
            time.sleep(0.1)
        statuses += [httpx.post(url, headers=headers, json=CHAT).status_code for _ in range(2)]
    finally:
        process.stop()
    # Rebuilt from the ledger: $2 spent, so exactly one more $1 request fits.
    assert statuses == [200, 429, 429]
    assert '"budget_counter_rebuilt"' in process.log()


def test_rate_limits_fail_open_when_configured_and_usage_reaches_the_ledger_without_redis(
    dollar_per_request: None,
    tenant_a: Tenant,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
) -> None:
    """AICC_RATE_LIMIT_FAIL_OPEN=true and no budget: with Redis stopped the request is served,
    and its usage event, which the stream cannot take, is written to the ledger directly."""
    key = api_key_create(tenant=tenant_a, name="fail-open", rpm_limit=100)
    process = GatewayProcess(
        upstream_url=fake_upstream.url,
        redis_url=redis_server.url,
        env={"AICC_REDIS_TIMEOUT_S": "0.5", "AICC_RATE_LIMIT_FAIL_OPEN": "true"},
    ).start()
    url = f"{process.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key.raw_key}"}
    try:
        assert httpx.post(url, headers=headers, json=CHAT).status_code == 200
        redis_server.stop()
        served = httpx.post(url, headers=headers, json=CHAT, timeout=10)
        correlation_id = served.headers["x-correlation-id"]
    finally:
        process.stop()
    assert served.status_code == 200, served.text
    record = UsageRecord.objects.get(correlation_id=correlation_id)
    assert (record.status_code, record.cost_usd) == (200, Decimal(1))
    assert '"usage_event_written_directly"' in process.log()


def test_rebuild_budget_counters_restores_lost_counters_from_the_ledger(
    dollar_per_request: None, tenant_a: Tenant, two_gateways: object, redis_client: redis.Redis
) -> None:
    from django.core.management import call_command

    gateway = two_gateways()[0]  # type: ignore[operator]
    key = api_key_create(tenant=tenant_a, name="rebuilt")
    budget_set(
        tenant_id=tenant_a.pk, api_key_id=key.api_key.pk, limit_usd=Decimal(5), period="monthly"
    )
    budget_set(tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal(100), period="monthly")
    url = f"{gateway.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key.raw_key}"}
    time.sleep(0.5)  # the budget change reaches the gateway's credential cache
    for _ in range(3):
        assert httpx.post(url, headers=headers, json=CHAT).status_code == 200
    drain_ledger()
    counters = redis_client.keys("aicc:budget:*:spent")
    assert len(counters) == 2
    redis_client.delete(*counters)  # "Redis lost its counters"
    out = io.StringIO()
    call_command("rebuild_budget_counters", stdout=out)
    assert "2 of 2 budget counters written" in out.getvalue()
    # $3 of $5 spent according to the ledger: two more fit, the third does not.
    statuses = [httpx.post(url, headers=headers, json=CHAT).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
