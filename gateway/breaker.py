"""A circuit breaker per upstream ("litellm", "ollama", ...) whose state every gateway process
shares through Redis.

Contract. Before calling the upstream, `decision = await breaker.allow()`; if
`decision.is_allowed` is false answer 503 with `Retry-After: decision.retry_after_s`. The caller
classifies the outcome and hands the decision back:

    5xx, timeout, connection error  -> await breaker.record_failure(decision)
    2xx / 3xx                       -> await breaker.record_success(decision)
    4xx                             -> nothing, unless decision.is_probe: any answer proves the
                                       upstream is up, so record_success(decision)
    cancelled before an answer      -> await breaker.release(decision) (gives back a probe)

States: closed -> open after `failure_threshold` consecutive failures counted across all
processes (one Redis hash per upstream); open -> half-open when `open_until` passes; in
half-open exactly one caller, across all processes, gets the probe (a token with a lease, so a
crashed prober cannot wedge the breaker); a successful probe closes and resets failures and
timeout; a failed probe reopens with the timeout doubled, capped at `max_reset_timeout_s`.
Results of callers that were rejected, or of stale probes, change nothing. Every transition is
one Lua script, so concurrent processes cannot interleave inside it.

Cost. Closed with no failures (the common case): no Redis round trip. An `allow()` that reaches
Redis also learns the shared failure count; if it is zero, the process keeps "closed, no
failures" for `closed_cache_s` (default 0.25 s, injected clock) and answers `allow()` from it.
`record_success()` skips Redis when there is no streak to end: not a probe, the decision saw
zero failures, and that view is still fresh. While one `allow()` renews a stale view, the
callers arriving meanwhile wait for its reply instead of each sending their own, and take it if
it shows closed with no failures (otherwise each asks for itself, as before). A busy process
thus sends about one command per `closed_cache_s` instead of two per request. The price,
bounded by `closed_cache_s`:
- another process opening the breaker is seen here up to `closed_cache_s` (plus a round trip)
  late, and requests are sent meanwhile. `closed_cache_s <= reset_timeout_s` is enforced, so
  they stop before the deadline and never run beside the probe;
- an unreported success was recorded within `closed_cache_s` of a Redis reply showing zero
  failures, so it can only miss ending a streak that began at most `closed_cache_s` before it.
The view is dropped at once by a local failure, by any reply showing failures or an open
breaker, and when Redis goes away or comes back; an epoch counter keeps a reply that left
before the drop from restoring it. `closed_cache_s=0` sends every call to Redis, as before.
Failures, probes, releases, and everything in open and half-open, take one round trip as
before, so failure counting, the single probe and the growing timeout stay exact. Open: the
deadline is cached in the process and `allow()` makes no Redis call before it; safe because
only a probe closes the breaker, a probe only starts after the deadline, and the deadline is
absolute. Deadlines come from the injected `clock`, passed to the scripts in ms (never Redis
TIME), so processes need synchronised clocks (NTP) and tests can move time.

Redis unavailable (connection error or no answer within `redis_timeout_s`): the breaker logs
`breaker_redis_unavailable` once and runs the same state machine on process-local state, so
requests still flow and a dead upstream is still cut off (after `failure_threshold` failures in
this process). One caller retries Redis every `redis_retry_after_s`; on success it logs
`breaker_redis_recovered` and drops the local state. Failing open rather than closed: losing
Redis must not turn every request into an error.

Why not a library: pybreaker, aiobreaker, circuitbreaker, asyncbreaker and aiobreaker-redis keep
state per process or write it with non-atomic reads and writes; purgatory uses plain GET/SET
and lets every caller through in half-open. None gives an atomic single cross-process probe
with a lease plus a growing timeout.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.breaker_local import LocalState, Reply
from gateway.lua import load_script

log = structlog.get_logger(__name__)

State = Literal["closed", "open", "half_open"]
TransitionHook = Callable[[str, State, State], None]

KEY_PREFIX = "aicc:breaker:"
_TRANSITION_EVENTS: dict[State, str] = {
    "open": "breaker_opened",
    "half_open": "breaker_half_open",
    "closed": "breaker_closed",
}
_REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

# One hash per upstream: state ("open" or absent = closed), failures, open_until_ms, timeout_ms,
# probe_token, probe_until_ms. A closed breaker with no failures has no key at all.
# Script replies are {outcome, deadline_ms, number}; a closed `allow` returns the failure count.


@dataclass(frozen=True, slots=True)
class Decision:
    """What `allow()` answered; hand it back to `record_success` / `record_failure` / `release`."""

    is_allowed: bool
    is_probe: bool = False
    retry_after_s: float = 0.0
    probe_token: str = ""
    # Shared consecutive failures when this was allowed (0 when answered from the closed view).
    failures_seen: int = 0


_ALLOWED = Decision(is_allowed=True)


class CircuitBreaker:
    """One upstream's breaker in this process; the state lives in Redis at `aicc:breaker:<name>`."""

    def __init__(
        self,
        name: str,
        *,
        redis: Redis,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        max_reset_timeout_s: float = 300.0,
        probe_lease_s: float = 130.0,
        redis_timeout_s: float = 0.5,
        redis_retry_after_s: float = 5.0,
        closed_cache_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        on_transition: TransitionHook | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0 < reset_timeout_s <= max_reset_timeout_s:
            raise ValueError("need 0 < reset_timeout_s <= max_reset_timeout_s")
        if probe_lease_s <= 0 or redis_timeout_s <= 0 or redis_retry_after_s <= 0:
            raise ValueError("probe_lease_s, redis_timeout_s and redis_retry_after_s must be > 0")
        if not 0 <= closed_cache_s <= reset_timeout_s:
            # Longer, and a view taken just before another process opened could outlive the
            # deadline: requests would then reach the upstream beside the single probe.
            raise ValueError("need 0 <= closed_cache_s <= reset_timeout_s")
        self.name = name
        self.failure_threshold = failure_threshold
        self.clock = clock
        self.on_transition = on_transition
        # Transitions this process performed, by the state entered. Other processes count theirs.
        self.transition_counts: Counter[State] = Counter()
        self._key = KEY_PREFIX + name
        self._reset_timeout_ms = round(reset_timeout_s * 1000)
        self._max_reset_timeout_ms = round(max_reset_timeout_s * 1000)
        # The lease must outlast the slowest legitimate probe (connect + read timeout of the
        # upstream call), otherwise a second probe starts while the first is still running.
        self._probe_lease_ms = round(probe_lease_s * 1000)
        self._redis_timeout_s = redis_timeout_s
        self._redis_retry_after_s = redis_retry_after_s
        self._scripts = {
            "allow": redis.register_script(load_script("breaker_allow.lua")),
            "failure": redis.register_script(load_script("breaker_failure.lua")),
            "success": redis.register_script(load_script("breaker_success.lua")),
            "release": redis.register_script(load_script("breaker_release.lua")),
        }
        self._redis = redis
        self._open_until_ms = 0  # cached shared deadline; before it, reject without Redis
        self._closed_cache_ms = round(closed_cache_s * 1000)
        # When a reply last showed "closed, no failures"; within the window, allow without Redis.
        self._closed_seen_at_ms: int | None = None
        # Bumped whenever that view is dropped; a reply sent before the drop must not restore it.
        self._closed_epoch = 0
        # The allow() now asking Redis with the view stale; it resolves to whether its reply
        # renewed the view, so callers arriving meanwhile wait for it instead of asking too.
        self._renewing: asyncio.Future[bool] | None = None
        self._local = LocalState()
        self._is_redis_down = False
        self._redis_retry_at_s = 0.0

    # --- the four calls of the request path -------------------------------------------------
    async def allow(self) -> Decision:
        now_ms = self._now_ms()
        if now_ms < self._open_until_ms:
            return self._reject(self._open_until_ms - now_ms)
        if self._is_closed_view_fresh(now_ms):
            return _ALLOWED
        if self._renewing is not None:
            if await asyncio.shield(self._renewing):
                return _ALLOWED
            now_ms = self._now_ms()  # it saw failures or an open breaker: ask for ourselves
        epoch = self._closed_epoch
        token = secrets.token_hex(8)
        renewing = None
        if self._renewing is None and self._closed_cache_ms:
            renewing = self._renewing = asyncio.get_running_loop().create_future()
        is_renewed = False
        try:
            outcome, deadline_ms, number = await self._run(
                "allow",
                (now_ms, token, self._probe_lease_ms),
                lambda local: local.allow(now_ms, token, self._probe_lease_ms),
            )
            # Only "closed, no failures", from a reply sent since the view was last dropped.
            is_renewed = outcome == "closed" and number == 0 and epoch == self._closed_epoch
        finally:
            if renewing is not None:
                self._renewing = None
                renewing.set_result(is_renewed)
        if outcome == "closed" and number == 0:
            self._remember_closed(now_ms, epoch)
            return _ALLOWED
        self._forget_closed()
        if outcome == "closed":
            return Decision(is_allowed=True, failures_seen=number)
        if outcome == "open":
            self._open_until_ms = deadline_ms
            return self._reject(deadline_ms - now_ms)
        if outcome == "probing":
            # The probe decides soon; don't tell clients to stay away for the whole lease.
            return self._reject(min(deadline_ms - now_ms, self._reset_timeout_ms))
        if outcome == "probe_after_lapsed_lease":
            log.warning("breaker_probe_lease_lapsed", upstream=self.name)
        else:
            self._transition("open", "half_open", timeout_s=number / 1000)
        return Decision(is_allowed=True, is_probe=True, probe_token=token)

    async def record_failure(self, decision: Decision) -> None:
        if not decision.is_allowed:
            return  # our own fast-fail says nothing about the upstream
        self._forget_closed()  # before the round trip: concurrent allows must see it at once
        now_ms = self._now_ms()
        outcome, deadline_ms, timeout_ms = await self._run(
            "failure",
            (
                now_ms,
                decision.probe_token,
                self.failure_threshold,
                self._reset_timeout_ms,
                self._max_reset_timeout_ms,
            ),
            lambda local: local.failure(
                now_ms,
                decision.probe_token,
                self.failure_threshold,
                self._reset_timeout_ms,
                self._max_reset_timeout_ms,
            ),
        )
        if outcome in ("opened", "reopened"):
            self._open_until_ms = deadline_ms
            old: State = "closed" if outcome == "opened" else "half_open"
            self._transition(old, "open", timeout_s=timeout_ms / 1000)

    async def record_success(self, decision: Decision) -> None:
        if not decision.is_allowed:
            return
        now_ms = self._now_ms()
        if (
            not decision.is_probe
            and decision.failures_seen == 0
            and self._is_closed_view_fresh(now_ms)
        ):
            return  # no streak to end, as far as this process saw under closed_cache_s ago
        epoch = self._closed_epoch
        outcome, _, _ = await self._run(
            "success", (decision.probe_token,), lambda local: local.success(decision.probe_token)
        )
        if outcome in ("reset", "closed"):
            self._remember_closed(now_ms, epoch)  # the script just left no failures behind
        if outcome == "closed":
            self._open_until_ms = 0
            self._transition("half_open", "closed", timeout_s=self._reset_timeout_ms / 1000)

    async def release(self, decision: Decision) -> None:
        """The call ended without an answer (client went away): a probe token goes back."""
        if decision.is_probe:
            token = decision.probe_token
            await self._run("release", (token,), lambda local: local.release(token))

    # --- health ---------------------------------------------------------------------------------
    async def snapshot(self) -> dict[str, Any]:
        """State for /health: read-only, one HGETALL (or the local state while Redis is down)."""
        state = self._local
        is_shared = not self._is_redis_down
        if is_shared:
            try:
                async with asyncio.timeout(self._redis_timeout_s):
                    fields = await self._redis.hgetall(self._key)  # bytes: no decoding
                    state = LocalState.from_hash(cast(dict[bytes, bytes], fields))
            except _REDIS_DOWN_ERRORS:
                is_shared = False
        now_ms = self._now_ms()
        current: State = "closed"
        if state.is_open:
            current = "open" if now_ms < state.open_until_ms else "half_open"
        return {
            "upstream": self.name,
            "state": current,
            "consecutive_failures": state.failures,
            "open_until": state.open_until_ms / 1000 if state.is_open else None,
            "current_timeout_s": (state.timeout_ms or self._reset_timeout_ms) / 1000,
            "is_probe_in_flight": bool(state.probe_token) and now_ms < state.probe_until_ms,
            "is_shared": is_shared,
        }

    # --- internals ------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _is_closed_view_fresh(self, now_ms: int) -> bool:
        seen_at_ms = self._closed_seen_at_ms
        # The lower bound keeps a wall clock stepped backwards from stretching the window.
        return seen_at_ms is not None and seen_at_ms <= now_ms < seen_at_ms + self._closed_cache_ms

    def _remember_closed(self, now_ms: int, epoch: int) -> None:
        if epoch == self._closed_epoch:
            self._closed_seen_at_ms = now_ms

    def _forget_closed(self) -> None:
        self._closed_seen_at_ms = None
        self._closed_epoch += 1

    def _reject(self, retry_after_ms: int) -> Decision:
        return Decision(is_allowed=False, retry_after_s=max(retry_after_ms, 1) / 1000)

    def _transition(self, old: State, new: State, *, timeout_s: float) -> None:
        self.transition_counts[new] += 1
        emit = log.warning if new == "open" else log.info
        emit(
            _TRANSITION_EVENTS[new],
            upstream=self.name,
            previous_state=old,
            timeout_s=timeout_s,
            is_shared=not self._is_redis_down,
        )
        if self.on_transition is not None:
            self.on_transition(self.name, old, new)

    async def _run(
        self, script: str, args: Sequence[str | int], local_step: Callable[[LocalState], Reply]
    ) -> Reply:
        if self._is_redis_down:
            if self.clock() < self._redis_retry_at_s:
                return local_step(self._local)
            # Only this caller tries Redis again; the others stay local until it answers.
            self._redis_retry_at_s = self.clock() + self._redis_retry_after_s
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                reply = await self._scripts[script](keys=[self._key], args=list(args))
        except _REDIS_DOWN_ERRORS as error:
            # A timed-out script may still have run (e.g. taken the probe); the lease covers it.
            if not self._is_redis_down:
                self._is_redis_down = True
                self._forget_closed()
                self._redis_retry_at_s = self.clock() + self._redis_retry_after_s
                log.error(
                    "breaker_redis_unavailable",
                    upstream=self.name,
                    error=type(error).__name__,
                    retry_after_s=self._redis_retry_after_s,
                )
            return local_step(self._local)
        if self._is_redis_down:
            self._is_redis_down = False
            self._local = LocalState()
            self._forget_closed()
            log.warning("breaker_redis_recovered", upstream=self.name)
        outcome, deadline_ms, number = reply
        return (outcome.decode(), int(deadline_ms), int(number))
