"""Rate limits on real Redis: exactness across processes, all-or-nothing, windows, leases."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.limits import (
    LimiterUnavailable,
    LimitKind,
    RateLimiter,
    RatePolicy,
    Scope,
    ScopeLimits,
    rl_key,
)
from gateway.rate_limit_headers import rate_limit_headers
from tests.clock import FakeClock

START_S = 1_795_000_000.0  # 2026-11-17, any fixed instant works


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_S)


@pytest.fixture
def limiter(aredis: aioredis.Redis, clock: FakeClock) -> RateLimiter:
    return RateLimiter(aredis, fail_open=False, clock=clock)


def key_a(policy: RatePolicy) -> ScopeLimits:
    return ScopeLimits(Scope.KEY, "key-a", policy)


def tenant_a(policy: RatePolicy) -> ScopeLimits:
    return ScopeLimits(Scope.TENANT, "tenant-a", policy)


UNLIMITED = RatePolicy()


# --- across processes ---------------------------------------------------------------------


def _admit_worker(
    redis_url: str,
    now_s: float,
    count: int,
    worker: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[int],
) -> None:
    async def fire() -> int:
        # A gateway process shares a bounded pool; callers queue for a connection.
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=10)
        client = aioredis.Redis(connection_pool=pool)
        limiter = RateLimiter(client, fail_open=False, clock=lambda: now_s)
        await client.ping()  # connect before the start signal, so the admissions overlap
        await asyncio.to_thread(barrier.wait)
        outcomes = await asyncio.gather(
            *(
                limiter.admit(
                    request_id=f"w{worker}-{i}",
                    key=key_a(RatePolicy(requests_per_minute=60)),
                    tenant=tenant_a(RatePolicy(requests_per_minute=10_000)),
                    estimated_tokens=10,
                )
                for i in range(count)
            )
        )
        await client.aclose()
        await pool.disconnect()
        return sum(1 for r in outcomes if r.admitted)

    results.put(asyncio.run(fire()))


@pytest.fixture
def spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


async def test_60_rpm_admits_exactly_60_of_240_concurrent_requests_from_two_processes(
    aredis: aioredis.Redis, redis_url: str, spawn: multiprocessing.context.SpawnContext
) -> None:
    processes_n, per_process = 2, 120
    # On a loaded machine one process may finish its 120 before the other starts; the total
    # must be exactly 60 every time, and at least one attempt must see both processes compete.
    for _attempt in range(3):
        await aredis.flushdb()
        barrier = spawn.Barrier(processes_n)
        results: multiprocessing.Queue[int] = spawn.Queue()
        procs = [
            spawn.Process(
                target=_admit_worker, args=(redis_url, START_S, per_process, w, barrier, results)
            )
            for w in range(processes_n)
        ]
        for p in procs:
            p.start()
        admitted = [await asyncio.to_thread(results.get, True, 30) for _ in procs]
        for p in procs:
            await asyncio.to_thread(p.join, 10)
        assert sum(admitted) == 60
        if all(n > 0 for n in admitted):
            break
    assert all(n > 0 for n in admitted), "both processes must have competed"
    # The tenant was charged only for what got through.
    limiter = RateLimiter(aredis, fail_open=False, clock=lambda: START_S)
    probe = await limiter.admit(
        request_id="probe",
        key=key_a(UNLIMITED),
        tenant=tenant_a(RatePolicy(requests_per_minute=10_000)),
        estimated_tokens=0,
    )
    assert probe.requests is not None
    assert probe.requests.remaining == 10_000 - 61


# --- requests per minute ------------------------------------------------------------------


async def test_remaining_counts_down_by_one_per_request(limiter: RateLimiter) -> None:
    policy = RatePolicy(requests_per_minute=5)
    seen = []
    for i in range(5):
        result = await limiter.admit(
            request_id=f"r{i}", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
        )
        assert result.admitted
        assert result.requests is not None
        seen.append(result.requests.remaining)
    assert seen == [4, 3, 2, 1, 0]


async def test_rejected_request_succeeds_after_waiting_its_retry_after(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    policy = RatePolicy(requests_per_minute=7)  # 60/7 s per request: not a whole second
    for i in range(7):
        assert (
            await limiter.admit(
                request_id=f"r{i}",
                key=key_a(policy),
                tenant=tenant_a(UNLIMITED),
                estimated_tokens=0,
            )
        ).admitted
    for attempt in range(5):
        rejected = await limiter.admit(
            request_id=f"late{attempt}",
            key=key_a(policy),
            tenant=tenant_a(UNLIMITED),
            estimated_tokens=0,
        )
        assert not rejected.admitted
        assert rejected.rejected_scope is Scope.KEY
        assert rejected.rejected_kind is LimitKind.REQUESTS
        assert rejected.retry_after_s >= 1
        # Just short of retry_after is still too early (the wait is not padded by seconds).
        clock.advance(rejected.retry_after_s - 1)
        early = await limiter.admit(
            request_id=f"early{attempt}",
            key=key_a(policy),
            tenant=tenant_a(UNLIMITED),
            estimated_tokens=0,
        )
        assert not early.admitted
        clock.advance(1)
        retried = await limiter.admit(
            request_id=f"retry{attempt}",
            key=key_a(policy),
            tenant=tenant_a(UNLIMITED),
            estimated_tokens=0,
        )
        assert retried.admitted


async def test_rejection_by_tenant_consumes_nothing_in_the_key_scope(
    limiter: RateLimiter,
) -> None:
    key_policy = RatePolicy(requests_per_minute=100, tokens_per_minute=10_000, max_concurrent=5)
    tenant_policy = RatePolicy(requests_per_minute=1)
    first = await limiter.admit(
        request_id="r1",
        key=key_a(key_policy),
        tenant=tenant_a(tenant_policy),
        estimated_tokens=1_000,
    )
    assert first.admitted
    second = await limiter.admit(
        request_id="r2",
        key=key_a(key_policy),
        tenant=tenant_a(tenant_policy),
        estimated_tokens=1_000,
    )
    assert not second.admitted
    assert (second.rejected_scope, second.rejected_kind) == (Scope.TENANT, LimitKind.REQUESTS)
    # The key still shows only the first request in every kind.
    probe = await limiter.admit(
        request_id="r3", key=key_a(key_policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert probe.requests is not None and probe.requests.remaining == 98
    assert probe.tokens is not None and probe.tokens.remaining == 9_000
    assert probe.concurrency is not None and probe.concurrency.remaining == 3


async def test_headers_report_the_tightest_scope(limiter: RateLimiter) -> None:
    result = await limiter.admit(
        request_id="r1",
        key=key_a(RatePolicy(requests_per_minute=100, tokens_per_minute=50_000)),
        tenant=tenant_a(RatePolicy(requests_per_minute=10, tokens_per_minute=1_000_000)),
        estimated_tokens=1_500,
    )
    assert result.requests is not None and result.requests.scope is Scope.TENANT
    assert result.tokens is not None and result.tokens.scope is Scope.KEY
    headers = dict(rate_limit_headers(result))
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-reset-requests"] == "6s"
    assert headers["x-ratelimit-limit-tokens"] == "50000"
    assert headers["x-ratelimit-remaining-tokens"] == "48500"
    assert headers["x-ratelimit-reset-tokens"] == "1.8s"
    assert headers["RateLimit-Policy"] == '"requests";q=10;w=60'
    assert headers["RateLimit"] == '"requests";r=9;t=6'
    assert "Retry-After" not in headers


async def test_rejected_headers_carry_retry_after(limiter: RateLimiter) -> None:
    policy = RatePolicy(requests_per_minute=1, max_concurrent=3)
    await limiter.admit(
        request_id="r1", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    rejected = await limiter.admit(
        request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    headers = rate_limit_headers(rejected)
    assert ("Retry-After", "60") in headers
    assert ("x-ratelimit-reset-requests", "1m0s") in headers
    assert (
        "RateLimit-Policy",
        '"requests";q=1;w=60, "concurrency";q=3;qu="concurrent-requests"',
    ) in headers
    assert ("RateLimit", '"requests";r=0;t=60, "concurrency";r=2') in headers


# --- tokens per minute --------------------------------------------------------------------


async def test_token_estimate_is_reserved_then_settled_to_the_actual_count(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    policy = RatePolicy(tokens_per_minute=10_000)
    first = await limiter.admit(
        request_id="r1", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=8_000
    )
    assert first.admitted and first.tokens is not None and first.tokens.remaining == 2_000
    blocked = await limiter.admit(
        request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=5_000
    )
    assert not blocked.admitted and blocked.rejected_kind is LimitKind.TOKENS
    assert first.admission is not None
    await limiter.settle(first.admission, 1_000)
    await limiter.settle(first.admission, 1_000)  # a second settle changes nothing
    after = await limiter.admit(
        request_id="r3", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=5_000
    )
    assert after.admitted and after.tokens is not None and after.tokens.remaining == 4_000


async def test_actual_above_estimate_leaves_debt_that_delays_the_next_request(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    policy = RatePolicy(tokens_per_minute=6_000)  # 100 tokens per second
    first = await limiter.admit(
        request_id="r1", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=1_000
    )
    assert first.admission is not None
    await limiter.settle(first.admission, 7_000)  # 1,000 over the whole minute's allowance
    rejected = await limiter.admit(
        request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=100
    )
    assert not rejected.admitted
    assert rejected.retry_after_s == 11  # (7,000 + 100 - 6,000) / 100 per second, rounded up
    clock.advance(rejected.retry_after_s)
    assert (
        await limiter.admit(
            request_id="r3", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=100
        )
    ).admitted


async def test_request_larger_than_the_whole_minute_is_flagged_too_large(
    limiter: RateLimiter,
) -> None:
    result = await limiter.admit(
        request_id="r1",
        key=key_a(RatePolicy(tokens_per_minute=1_000)),
        tenant=tenant_a(UNLIMITED),
        estimated_tokens=1_001,
    )
    assert not result.admitted
    assert result.is_request_too_large


# --- concurrency --------------------------------------------------------------------------


async def test_concurrency_slot_is_freed_by_release(limiter: RateLimiter) -> None:
    policy = RatePolicy(max_concurrent=2)
    held = [
        await limiter.admit(
            request_id=f"r{i}", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
        )
        for i in range(2)
    ]
    full = await limiter.admit(
        request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert not full.admitted and full.rejected_kind is LimitKind.CONCURRENCY
    assert full.retry_after_s == 1
    assert held[0].admission is not None
    await limiter.finish(held[0].admission, actual_tokens=None)
    await limiter.release(held[0].admission)  # releasing twice frees one slot only
    again = await limiter.admit(
        request_id="r3", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert again.admitted
    assert again.concurrency is not None and again.concurrency.remaining == 0


async def test_crashed_holders_slot_expires_with_its_lease_unless_renewed(
    aredis: aioredis.Redis, clock: FakeClock
) -> None:
    limiter = RateLimiter(aredis, fail_open=False, clock=clock, lease_s=600)
    policy = RatePolicy(max_concurrent=1)
    crashed = await limiter.admit(
        request_id="crashed", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert crashed.admitted  # ...and its process dies without releasing
    clock.advance(599)
    assert not (
        await limiter.admit(
            request_id="r1", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
        )
    ).admitted
    clock.advance(2)
    streaming = await limiter.admit(
        request_id="stream", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert streaming.admitted and streaming.admission is not None
    clock.advance(500)
    await limiter.renew(streaming.admission)
    clock.advance(500)  # 1,000 s after admission, 500 s after renewal: still held
    assert not (
        await limiter.admit(
            request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
        )
    ).admitted
    assert await aredis.zscore(rl_key(Scope.KEY, "key-a", "conc"), "crashed") is None


# --- Redis unavailable --------------------------------------------------------------------


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    yield client
    await client.aclose()


async def test_fail_open_limiter_admits_when_redis_is_down(dead_redis: aioredis.Redis) -> None:
    limiter = RateLimiter(dead_redis, fail_open=True, timeout_s=0.5)
    result = await limiter.admit(
        request_id="r1",
        key=key_a(RatePolicy(requests_per_minute=1)),
        tenant=tenant_a(UNLIMITED),
        estimated_tokens=10,
    )
    assert result.admitted and result.is_fail_open
    assert result.admission is not None
    await limiter.finish(result.admission, actual_tokens=5)  # inert: no Redis call, no error


async def test_fail_closed_limiter_raises_limiter_unavailable_when_redis_is_down(
    dead_redis: aioredis.Redis,
) -> None:
    limiter = RateLimiter(dead_redis, fail_open=False, timeout_s=0.5)
    with pytest.raises(LimiterUnavailable):
        await limiter.admit(
            request_id="r1",
            key=key_a(RatePolicy(requests_per_minute=1)),
            tenant=tenant_a(UNLIMITED),
            estimated_tokens=10,
        )


async def test_a_redis_that_never_answers_times_out_as_limiter_unavailable() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accept, read, never reply

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    limiter = RateLimiter(client, fail_open=False, timeout_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LimiterUnavailable):
            await limiter.admit(
                request_id="r1",
                key=key_a(RatePolicy(requests_per_minute=1)),
                tenant=tenant_a(UNLIMITED),
                estimated_tokens=10,
            )
        assert loop.time() - started < 2
    finally:
        await client.aclose()
        server.close()


async def test_limiter_without_a_clock_uses_redis_time(aredis: aioredis.Redis) -> None:
    limiter = RateLimiter(aredis, fail_open=False, clock=None)
    policy = RatePolicy(requests_per_minute=2, max_concurrent=5)
    first = await limiter.admit(
        request_id="r1", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    second = await limiter.admit(
        request_id="r2", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    third = await limiter.admit(
        request_id="r3", key=key_a(policy), tenant=tenant_a(UNLIMITED), estimated_tokens=0
    )
    assert (first.admitted, second.admitted, third.admitted) == (True, True, False)
    assert third.retry_after_s in (29, 30)  # half a minute, less what elapsed since
    assert first.admission is not None
    await limiter.renew(first.admission)
    seconds, micros = await aredis.time()
    expiry_ms = await aredis.zscore(rl_key(Scope.KEY, "key-a", "conc"), "r1")
    assert expiry_ms is not None
    assert abs(expiry_ms - (seconds * 1000 + micros // 1000 + 600_000)) < 5_000
