"""Request count, error rate, latency percentiles and cache hit rate over the last few minutes,
across all gateway processes, for /health/detailed.

Each process accumulates in memory (`note`, no I/O on the hot path) and `flush_forever` adds
the totals to Redis about once a second, one pipeline per flush. Redis holds one hash per
`BUCKET_S` bucket, `aicc:stats:<bucket start s>`, with fields `count`, `errors` (5xx),
`cache_hits` and `lat:<i>` (requests whose latency fell in `LATENCY_BOUNDS_MS[i]`); buckets
expire after the window. Percentiles are estimated from those fixed latency buckets (linear
within a bucket), which is exact enough for a health page and merges across processes, unlike
per-process percentiles.

If Redis is down, unflushed counts are kept (for at most one window) and added later.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)

KEY_PREFIX = "aicc:stats:"
BUCKET_S = 10
WINDOW_S = 300
FLUSH_INTERVAL_S = 1.0
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, math.inf,
)  # fmt: skip


def latency_bucket(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS) - 1


class RecentStats:
    """This process's not-yet-flushed counts, by bucket start."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        bucket_s: int = BUCKET_S,
        window_s: int = WINDOW_S,
    ) -> None:
        self.clock = clock
        self.bucket_s = bucket_s
        self.window_s = window_s
        self._pending: defaultdict[int, Counter[str]] = defaultdict(Counter)

    def note(self, ctx: RequestContext) -> None:
        self.add(latency_ms=ctx.elapsed_ms(), status=ctx.status, is_cache_hit=ctx.is_cache_hit)

    def add(self, *, latency_ms: float, status: int, is_cache_hit: bool) -> None:
        counts = self._pending[int(self.clock()) // self.bucket_s * self.bucket_s]
        counts["count"] += 1
        counts[f"lat:{latency_bucket(latency_ms)}"] += 1
        if status >= 500:
            counts["errors"] += 1
        if is_cache_hit:
            counts["cache_hits"] += 1

    async def flush(self, redis: Redis) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(Counter)
        oldest = self.clock() - self.window_s
        ttl_s = self.window_s + 2 * self.bucket_s
        pipe = redis.pipeline(transaction=False)
        for start, counts in pending.items():
            if start + self.bucket_s < oldest:
                continue  # already outside every window
            key = f"{KEY_PREFIX}{start}"
            for name, value in counts.items():
                pipe.hincrby(key, name, value)
            pipe.expire(key, ttl_s)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("recent_stats_flush_failed", error=type(exc).__name__)
            for start, counts in pending.items():
                self._pending[start].update(counts)

    async def flush_forever(self, redis: Redis, interval_s: float = FLUSH_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(redis)


def _percentile_ms(latency_counts: list[int], total: int, quantile: float) -> float | None:
    if total == 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(latency_counts):
        if count and seen + count >= rank:
            lower = 0.0 if index == 0 else LATENCY_BOUNDS_MS[index - 1]
            upper = LATENCY_BOUNDS_MS[index]
            if math.isinf(upper):
                return lower
            return round(lower + (upper - lower) * (rank - seen) / count, 1)
        seen += count
    return None


async def recent_window(
    redis: Redis,
    *,
    clock: Callable[[], float] = time.time,
    bucket_s: int = BUCKET_S,
    window_s: int = WINDOW_S,
) -> dict[str, Any]:
    """Totals of the buckets that started within the last `window_s` (the current included)."""
    newest = int(clock()) // bucket_s * bucket_s
    starts = range(newest - window_s + bucket_s, newest + bucket_s, bucket_s)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(f"{KEY_PREFIX}{start}")
    totals: Counter[str] = Counter()
    for fields in await pipe.execute():
        totals.update({name.decode(): int(value) for name, value in fields.items()})
    count = totals["count"]
    latency_counts = [totals[f"lat:{index}"] for index in range(len(LATENCY_BOUNDS_MS))]
    return {
        "window_s": window_s,
        "request_count": count,
        "error_rate": round(totals["errors"] / count, 4) if count else None,
        "cache_hit_rate": round(totals["cache_hits"] / count, 4) if count else None,
        "latency_p50_ms": _percentile_ms(latency_counts, count, 0.50),
        "latency_p99_ms": _percentile_ms(latency_counts, count, 0.99),
    }
