from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from billing import rollups, services
from billing.models import UsageRecord, UsageRollup
from billing.rollups import DAY, HOUR, percentile_cont, rollup_bucket, rollup_recent
from tests.billing.conftest import T0

pytestmark = pytest.mark.django_db


def _record(**fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "event_id": uuid.uuid4().hex,
        "tenant_id": 1,
        "api_key_id": 1,
        "secret_id": 1,
        "requested_model": "m",
        "served_model": "m",
        "endpoint": "chat.completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": Decimal("0.000001"),
        "latency_ms": 100,
        "status_code": 200,
        "started_at": T0,
        "finished_at": T0,
    }
    values.update(fields)
    return UsageRecord(**values)


@pytest.fixture
def ledger() -> list[UsageRecord]:
    """Two hours of mixed traffic over two tenants, keys and models, with awkward costs."""
    rng = random.Random(7)
    records = []
    for _ in range(400):
        started_at = T0 + timedelta(seconds=rng.randrange(0, 7200))
        records.append(
            _record(
                tenant_id=rng.choice([1, 2]),
                api_key_id=rng.choice([11, 12]),
                served_model=rng.choice(["small", "large"]),
                prompt_tokens=rng.randrange(0, 5000),
                completion_tokens=rng.randrange(0, 900),
                cached_tokens=rng.randrange(0, 50),
                # 12 decimal places: a float sum of these would be off in the last digits.
                cost_usd=Decimal(rng.randrange(1, 10**9)) / Decimal(10**12),
                latency_ms=rng.randrange(5, 4000),
                status_code=rng.choice([200, 200, 200, 429, 502]),
                is_cache_hit=rng.random() < 0.2,
                started_at=started_at,
                finished_at=started_at,
            )
        )
    return UsageRecord.objects.bulk_create(records)


def _raw_totals(records: list[UsageRecord]) -> dict[str, object]:
    return {
        "requests": len(records),
        "errors": sum(record.status_code >= 400 for record in records),
        "prompt_tokens": sum(record.prompt_tokens for record in records),
        "completion_tokens": sum(record.completion_tokens for record in records),
        "cached_tokens": sum(record.cached_tokens for record in records),
        "cost_usd": sum((record.cost_usd for record in records), Decimal(0)),
        "cache_hits": sum(record.is_cache_hit for record in records),
    }


def _rollup_totals(rows: list[UsageRollup]) -> dict[str, object]:
    return {
        "requests": sum(row.requests for row in rows),
        "errors": sum(row.errors for row in rows),
        "prompt_tokens": sum(row.prompt_tokens for row in rows),
        "completion_tokens": sum(row.completion_tokens for row in rows),
        "cached_tokens": sum(row.cached_tokens for row in rows),
        "cost_usd": sum((row.cost_usd for row in rows), Decimal(0)),
        "cache_hits": sum(row.cache_hits for row in rows),
    }


def test_hourly_and_daily_rollups_equal_the_raw_ledger_exactly(ledger: list[UsageRecord]) -> None:
    rollup_recent(granularity=HOUR, buckets_back=2, now=T0 + timedelta(hours=2))
    rollup_bucket(granularity=DAY, bucket_start=T0)

    hours = list(UsageRollup.objects.filter(granularity=HOUR))
    days = list(UsageRollup.objects.filter(granularity=DAY))
    assert _rollup_totals(hours) == _raw_totals(ledger)
    assert _rollup_totals(days) == _raw_totals(ledger)
    assert {row.bucket_start for row in hours} == {T0, T0 + timedelta(hours=1)}
    # Per group too: tenant 2's first-hour "large" traffic on key 11.
    group = [
        r
        for r in ledger
        if (r.tenant_id, r.api_key_id, r.served_model) == (2, 11, "large")
        and r.started_at < T0 + timedelta(hours=1)
    ]
    row = UsageRollup.objects.get(
        granularity=HOUR, bucket_start=T0, tenant_id=2, api_key_id=11, model="large"
    )
    assert _rollup_totals([row]) == _raw_totals(group)
    latencies = sorted(record.latency_ms for record in group)
    assert row.latency_p50_ms == percentile_cont(latencies, 0.5)
    assert row.latency_p99_ms <= max(latencies)


def test_rerunning_a_rollup_changes_nothing(ledger: list[UsageRecord]) -> None:
    rollup_bucket(granularity=HOUR, bucket_start=T0)
    before = list(UsageRollup.objects.order_by("id").values())
    rollup_bucket(granularity=HOUR, bucket_start=T0 + timedelta(minutes=30))  # same bucket
    assert list(UsageRollup.objects.order_by("id").values()) == before


def test_a_late_event_is_included_when_its_bucket_is_recomputed() -> None:
    _record(cost_usd=Decimal("0.1")).save()
    rollup_bucket(granularity=HOUR, bucket_start=T0)
    _record(cost_usd=Decimal("0.2"), latency_ms=300).save()
    rollup_bucket(granularity=HOUR, bucket_start=T0)
    row = UsageRollup.objects.get()
    assert (row.requests, row.cost_usd, row.latency_p50_ms) == (2, Decimal("0.3"), 200)


def test_percentiles_interpolate_like_postgres_percentile_cont() -> None:
    latencies = list(range(1, 101))
    assert percentile_cont(latencies, 0.50) == 51  # 50.5, rounded half up
    assert percentile_cont(latencies, 0.95) == 95  # 95.05
    assert percentile_cont(latencies, 0.99) == 99  # 99.01
    assert percentile_cont([42], 0.99) == 42
    assert percentile_cont([], 0.5) == 0


def test_retention_purge_removes_old_records_and_keeps_rollups(settings) -> None:
    settings.AICC_USAGE_RETENTION_DAYS = 30
    now = T0 + timedelta(days=40)
    old = _record(started_at=T0, finished_at=T0)
    recent = _record(started_at=now - timedelta(days=29), finished_at=now - timedelta(days=29))
    UsageRecord.objects.bulk_create([old, recent])
    rollup_bucket(granularity=DAY, bucket_start=T0)

    assert services.usage_purge_expired(now=now) == 1

    assert list(UsageRecord.objects.values_list("event_id", flat=True)) == [recent.event_id]
    # The purged day's rollup stays, and recomputing the now-empty bucket leaves it alone.
    rollup_bucket(granularity=DAY, bucket_start=T0)
    assert UsageRollup.objects.get(bucket_start=rollups.bucket_floor(DAY, T0)).requests == 1
