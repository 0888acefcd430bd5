"""Hourly and daily totals of the ledger, recomputed from raw records.

A bucket is recomputed whole, group by group, with update_or_create: re-running it changes
nothing, and a late event is picked up by the next run over its bucket. Sums are Python
Decimal sums of the ledger's Decimals, so a rollup equals the raw ledger exactly on every
database (SQLite's SUM would go through floats). Latency percentiles are computed in Python
from the bucket's latencies, with PostgreSQL's percentile_cont interpolation, rounded to whole
milliseconds; one code path on every database.

Groups are never deleted: once the retention purge has removed a bucket's raw records, its
rollups are all that remains, and recomputing an empty bucket leaves them alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction

from billing.models import UsageRecord, UsageRollup

HOUR = UsageRollup.Granularity.HOUR
DAY = UsageRollup.Granularity.DAY
_STEP = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}


def bucket_floor(granularity: str, moment: datetime) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if granularity == DAY else moment


def percentile_cont(sorted_values: list[int], fraction: float) -> int:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont), in whole ms."""
    if not sorted_values:
        return 0
    position = (len(sorted_values) - 1) * fraction
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    value = Decimal(sorted_values[lower]) + (
        Decimal(sorted_values[upper] - sorted_values[lower]) * Decimal(str(position - lower))
    )
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass
class _Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cache_hits: int = 0
    latencies_ms: list[int] = field(default_factory=list)


def rollup_bucket(*, granularity: str, bucket_start: datetime) -> int:
    """Recompute one bucket from the ledger; returns how many groups it has."""
    bucket_start = bucket_floor(granularity, bucket_start)
    bucket_end = bucket_start + _STEP[granularity]
    rows = (
        UsageRecord.objects.filter(started_at__gte=bucket_start, started_at__lt=bucket_end)
        .values_list(
            "tenant_id",
            "api_key_id",
            "served_model",
            "status_code",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost_usd",
            "is_cache_hit",
            "latency_ms",
        )
        .iterator(chunk_size=5000)
    )
    groups: dict[tuple[int, int, str], _Totals] = {}
    for (
        tenant_id,
        api_key_id,
        model,
        status_code,
        prompt,
        completion,
        cached,
        cost,
        is_hit,
        latency_ms,
    ) in rows:
        totals = groups.setdefault((tenant_id, api_key_id, model), _Totals())
        totals.requests += 1
        totals.errors += status_code >= 400
        totals.prompt_tokens += prompt
        totals.completion_tokens += completion
        totals.cached_tokens += cached
        totals.cost_usd += cost
        totals.cache_hits += is_hit
        totals.latencies_ms.append(latency_ms)
    with transaction.atomic():
        for (tenant_id, api_key_id, model), totals in groups.items():
            latencies = sorted(totals.latencies_ms)
            UsageRollup.objects.update_or_create(
                granularity=granularity,
                bucket_start=bucket_start,
                tenant_id=tenant_id,
                api_key_id=api_key_id,
                model=model,
                defaults={
                    "requests": totals.requests,
                    "errors": totals.errors,
                    "prompt_tokens": totals.prompt_tokens,
                    "completion_tokens": totals.completion_tokens,
                    "cached_tokens": totals.cached_tokens,
                    "cost_usd": totals.cost_usd,
                    "cache_hits": totals.cache_hits,
                    "latency_p50_ms": percentile_cont(latencies, 0.50),
                    "latency_p95_ms": percentile_cont(latencies, 0.95),
                    "latency_p99_ms": percentile_cont(latencies, 0.99),
                },
            )
    return len(groups)


def rollup_recent(*, granularity: str, buckets_back: int, now: datetime) -> int:
    """Recompute the bucket holding `now` and the `buckets_back` before it (late events)."""
    current = bucket_floor(granularity, now)
    return sum(
        rollup_bucket(granularity=granularity, bucket_start=current - _STEP[granularity] * back)
        for back in range(buckets_back + 1)
    )
