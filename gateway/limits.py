"""Exact rate limits shared by every gateway process: requests/min, tokens/min, concurrency.

Contract: `RateLimiter.admit()` checks the key's and the tenant's limits in ONE atomic Redis
round trip (a Lua script, EVALSHA with a NOSCRIPT fallback) and either consumes in every scope
or in none. An admitted request gets an `Admission`; the caller ends it with
`finish(admission, actual_tokens)` (or `settle` / `release` separately) and may `renew` its
concurrency lease during long streams. The gateway itself runs these scripts through
`prepare_admit` / `prepare_end`, composed with the budgets' into one script per metering phase
(gateway.meter_scripts); the methods here run the rate-limit part alone, with the same keys,
arguments and reply reading. `gateway.rate_limit_headers` renders a result as response
headers; budgets live in `gateway.budgets`.

Algorithm: GCRA (generic cell rate algorithm), the exact form of a token bucket, for requests
and tokens alike. A bucket of capacity `limit` refills continuously at `limit` per 60 s; a
request takes 1 (requests) or its token estimate (tokens). Why GCRA:
- exact: the state is one integer "fill" (units in use × window_ms) drained by `limit` per ms,
  compared with integers inside the script, so 240 simultaneous callers on a 60 rpm limit
  admit exactly 60, and `retry_after_s` is exactly when the next one fits;
- O(1) memory per scope (a sliding-window log keeps one entry per request: 10k rpm → 10k
  members per key), and no boundary burst of 2× like a fixed window, nor the approximation of
  a sliding-window counter;
- weighted costs and corrections are natural: `settle` moves the fill by
  (actual - estimate) tokens, leaving debt that later requests wait out when the estimate
  was short. This is also the semantics OpenAI documents (limits replenish continuously; the
  reset header is the time until the bucket is full again).
The trade-off: after a full burst a client may send 1 request per second, so a rolling 60 s
window can see up to 2× the limit at the very worst; the rate over time is exact.
Concurrency is a sorted set of request ids scored by lease expiry (default 10 min, renewable):
a crashed process's slots expire instead of leaking like a counter would.

Time: `now_ms` comes from `RateLimiter.clock` (default `time.time`; tests replace it), or
from Redis `TIME` inside the script when `clock=None` (one clock for all hosts, for
deployments whose hosts' clocks cannot be trusted to agree). The script never moves a bucket's
clock backwards, so a process whose clock lags cannot refill a bucket twice; a host whose
clock runs ahead delays refills for everyone by its skew, hence the `clock=None` option.

Redis key layout (one Redis, no cluster hash tags needed; ids are our own ids, never secrets):
    aicc:rl:{scope}:{owner_id}:req    HASH  f = fill (requests × ms), t = last update ms
    aicc:rl:{scope}:{owner_id}:tok    HASH  f = fill (tokens × ms), t = last update ms
    aicc:rl:{scope}:{owner_id}:conc   ZSET  member request_id, score = lease expiry ms
with scope "key" (owner_id = the API key's public id) or "tenant" (owner_id = tenant id).
Each key expires on its own once fully drained / all leases are over.

Failure: any Redis error or timeout becomes `LimiterUnavailable`. With `fail_open=True`,
`admit` instead returns an admitted result marked `is_fail_open` whose admission is inert.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.lua import load_script

KEY_PREFIX = "aicc"
WINDOW_MS = 60_000
DEFAULT_LEASE_S = 600.0

T = TypeVar("T")


class LimiterUnavailable(Exception):
    """Redis could not be asked (down, timed out, refused). Callers map it to 503."""


class Scope(StrEnum):
    KEY = "key"
    TENANT = "tenant"


class LimitKind(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"


@dataclass(frozen=True)
class RatePolicy:
    """Limits of one scope; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True)
class ScopeLimits:
    scope: Scope
    owner_id: str
    policy: RatePolicy


@dataclass(slots=True)
class Quota:
    """One header trio for the tightest scope of a kind."""

    scope: Scope
    limit: int
    remaining: int
    reset_ms: int

    @property
    def reset_s(self) -> int:
        return math.ceil(self.reset_ms / 1000)


@dataclass(slots=True)
class Admission:
    """What `settle`/`release` need to undo or correct an admission. One per request."""

    request_id: str
    scopes: tuple[ScopeLimits, ...]
    reserved_tokens: int
    is_inert: bool = False  # fail-open admissions touched no counter
    is_settled: bool = False
    is_released: bool = False


@dataclass(slots=True)
class RateLimitResult:
    admitted: bool
    rejected_scope: Scope | None = None
    rejected_kind: LimitKind | None = None
    retry_after_s: int = 0  # >= 1 when rejected
    is_request_too_large: bool = False  # the request can never fit this limit
    is_fail_open: bool = False
    requests: Quota | None = None
    tokens: Quota | None = None
    concurrency: Quota | None = None
    admission: Admission | None = field(default=None, compare=False)


@dataclass(slots=True)
class AdmitCall:
    """One admission as script keys and arguments; `result` reads the script's reply."""

    keys: list[str]
    args: list[Any]
    scopes: tuple[ScopeLimits, ...]
    request_id: str
    tokens: int

    def result(self, raw: list[Any]) -> RateLimitResult:
        return _result_from_script(
            [int(x) for x in raw], self.scopes, request_id=self.request_id, tokens=self.tokens
        )

    def fail_open_result(self) -> RateLimitResult:
        inert = Admission(self.request_id, self.scopes, self.tokens, is_inert=True)
        return RateLimitResult(admitted=True, is_fail_open=True, admission=inert)


@dataclass(slots=True)
class EndCall:
    """One settle and/or release as script keys and arguments; `applied` records it was run."""

    keys: list[str]
    args: list[Any]
    admission: Admission
    is_settle: bool
    is_release: bool

    def applied(self) -> None:
        self.admission.is_settled = self.admission.is_settled or self.is_settle
        self.admission.is_released = self.admission.is_released or self.is_release


def rl_key(scope: Scope, owner_id: str, kind: str) -> str:
    return f"{KEY_PREFIX}:rl:{scope.value}:{owner_id}:{kind}"


async def guarded(call: Awaitable[T], timeout_s: float | None = None) -> T:
    """Await a Redis call; every failure comes out as LimiterUnavailable. `timeout_s=None`: the
    call is bounded already (gateway.script_batch)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise LimiterUnavailable(f"redis unavailable: {type(exc).__name__}: {exc}") from exc


def _limit_arg(value: int | None) -> int:
    if value is not None and value < 0:
        raise ValueError("limits must be >= 0 or None")
    return -1 if value is None else value


class RateLimiter:
    """Rate limits over all gateway processes. One instance per process (scripts register once)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        fail_open: bool,
        lease_s: float = DEFAULT_LEASE_S,
        timeout_s: float = 1.0,
        clock: Callable[[], float] | None = time.time,
    ) -> None:
        self.client = client
        self.fail_open = fail_open
        self.lease_ms = int(lease_s * 1000)
        self.timeout_s = timeout_s
        self.clock = clock
        self._admit = client.register_script(load_script("rate_admit.lua"))
        self._finish = client.register_script(load_script("rate_finish.lua"))

    def _now_ms(self) -> int:
        return -1 if self.clock is None else int(self.clock() * 1000)

    def prepare_admit(
        self,
        *,
        request_id: str,
        key: ScopeLimits,
        tenant: ScopeLimits,
        estimated_tokens: int,
    ) -> AdmitCall:
        """The admission script's keys and arguments, for `admit` or a composed script."""
        if estimated_tokens < 0:
            raise ValueError("estimated_tokens must be >= 0")
        scopes = (key, tenant)
        keys: list[str] = []
        args: list[Any] = [
            self._now_ms(),
            WINDOW_MS,
            self.lease_ms,
            request_id,
            estimated_tokens,
            len(scopes),
        ]
        for limits in scopes:
            keys += [rl_key(limits.scope, limits.owner_id, k) for k in ("req", "tok", "conc")]
            policy = limits.policy
            args += [
                _limit_arg(policy.requests_per_minute),
                _limit_arg(policy.tokens_per_minute),
                _limit_arg(policy.max_concurrent),
            ]
        return AdmitCall(keys, args, scopes, request_id, estimated_tokens)

    async def admit(
        self,
        *,
        request_id: str,
        key: ScopeLimits,
        tenant: ScopeLimits,
        estimated_tokens: int,
    ) -> RateLimitResult:
        """Admit or reject one request in both scopes at once.

        `estimated_tokens` = prompt estimate + max_tokens; it is what the tokens/minute window
        holds until `settle` replaces it with the actual count.
        """
        call = self.prepare_admit(
            request_id=request_id, key=key, tenant=tenant, estimated_tokens=estimated_tokens
        )
        try:
            raw = await guarded(self._admit(keys=call.keys, args=call.args), self.timeout_s)
        except LimiterUnavailable:
            if not self.fail_open:
                raise
            return call.fail_open_result()
        return call.result(raw)

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        """Replace the token estimate with the actual count (once; later calls do nothing)."""
        await self._end(admission, actual_tokens=actual_tokens, is_release=False)

    async def release(self, admission: Admission) -> None:
        """Free the concurrency slot (once)."""
        await self._end(admission, actual_tokens=None, is_release=True)

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None:
        """settle + release in one round trip; `actual_tokens=None` keeps the estimate."""
        await self._end(admission, actual_tokens=actual_tokens, is_release=True)

    async def renew(self, admission: Admission) -> None:
        """Push the concurrency lease out by `lease_s` from now, for long streams."""
        if admission.is_inert or admission.is_released:
            return
        now_ms = self._now_ms()
        if now_ms < 0:  # Redis's clock; renewals are rare enough for the extra round trip
            seconds, micros = await guarded(self.client.time(), self.timeout_s)
            now_ms = seconds * 1000 + micros // 1000
        expiry_ms = now_ms + self.lease_ms
        async with self.client.pipeline(transaction=True) as pipe:
            for limits in admission.scopes:
                if limits.policy.max_concurrent is not None:
                    conc_key = rl_key(limits.scope, limits.owner_id, "conc")
                    pipe.zadd(conc_key, {admission.request_id: expiry_ms}, xx=True)
            await guarded(pipe.execute(), self.timeout_s)

    def prepare_end(
        self, admission: Admission, *, actual_tokens: int | None, is_release: bool
    ) -> EndCall | None:
        """The end script's keys and arguments, or None when there is nothing left to do."""
        if admission.is_inert:
            return None
        is_settle = actual_tokens is not None and not admission.is_settled
        is_release = is_release and not admission.is_released
        if not (is_settle or is_release):
            return None
        delta = (actual_tokens - admission.reserved_tokens) if actual_tokens is not None else 0
        keys: list[str] = []
        args: list[Any] = [
            self._now_ms(),
            WINDOW_MS,
            admission.request_id,
            delta,
            int(is_settle),
            int(is_release),
            len(admission.scopes),
        ]
        for limits in admission.scopes:
            keys += [rl_key(limits.scope, limits.owner_id, k) for k in ("tok", "conc")]
            args.append(_limit_arg(limits.policy.tokens_per_minute))
        return EndCall(keys, args, admission, is_settle=is_settle, is_release=is_release)

    async def _end(
        self, admission: Admission, *, actual_tokens: int | None, is_release: bool
    ) -> None:
        call = self.prepare_end(admission, actual_tokens=actual_tokens, is_release=is_release)
        if call is None:
            return
        await guarded(self._finish(keys=call.keys, args=call.args), self.timeout_s)
        call.applied()


def _result_from_script(
    raw: list[int], scopes: tuple[ScopeLimits, ...], *, request_id: str, tokens: int
) -> RateLimitResult:
    admitted, rejected_index, rejected_kind, wait_ms, too_large = raw[:5]
    quotas: dict[LimitKind, Quota] = {}
    for i, limits in enumerate(scopes):
        req_left, req_reset, tok_left, tok_reset, conc_left = raw[5 + i * 5 : 10 + i * 5]
        policy = limits.policy
        candidates = (
            (LimitKind.REQUESTS, policy.requests_per_minute, req_left, req_reset),
            (LimitKind.TOKENS, policy.tokens_per_minute, tok_left, tok_reset),
            (LimitKind.CONCURRENCY, policy.max_concurrent, conc_left, 0),
        )
        for kind, limit, left, reset_ms in candidates:
            if limit is None:
                continue
            quota = Quota(limits.scope, limit, left, max(reset_ms, 0))
            best = quotas.get(kind)
            # Tightest scope: least remaining, then the smaller limit.
            if best is None or (left, limit) < (best.remaining, best.limit):
                quotas[kind] = quota
    common = {
        "requests": quotas.get(LimitKind.REQUESTS),
        "tokens": quotas.get(LimitKind.TOKENS),
        "concurrency": quotas.get(LimitKind.CONCURRENCY),
    }
    if admitted:
        admission = Admission(request_id, scopes, tokens)
        return RateLimitResult(admitted=True, admission=admission, **common)
    kind = (LimitKind.REQUESTS, LimitKind.TOKENS, LimitKind.CONCURRENCY)[rejected_kind - 1]
    return RateLimitResult(
        admitted=False,
        rejected_scope=scopes[rejected_index - 1].scope,
        rejected_kind=kind,
        retry_after_s=max(1, math.ceil(wait_ms / 1000)),
        is_request_too_large=bool(too_large),
        **common,
    )
