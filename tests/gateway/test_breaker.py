"""The circuit breaker on real Redis, with a replaced clock and no sleeping.

Two `CircuitBreaker` objects on two Redis clients stand for two gateway processes. Single-process
rules run twice: on shared state in Redis and on the local fallback used while Redis is down
(a port nobody listens on), since both must follow the same state machine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from structlog.testing import capture_logs

from gateway.breaker import CircuitBreaker, Decision
from tests.live import RedisServer, free_port

THRESHOLD = 5
RESET_S = 10.0
MAX_RESET_S = 30.0
LEASE_S = 60.0
CLOSED_CACHE_S = 0.25
START_MS = 1_767_225_600_000


class Clock:
    """Wall time that moves only when a test moves it, kept in whole ms so deadlines are exact."""

    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> float:
        return self.now_ms / 1000

    def move_to_ms(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def advance_s(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


class CountingRedis(Redis):
    """redis-py's asyncio client, counting the commands it sends to the server.

    `hold_next_reply()` makes the next command's reply wait, as a slow network would: the command
    runs on the server at once, its reply reaches the caller only when the test releases it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands_sent = 0
        self._held: tuple[asyncio.Event, asyncio.Event] | None = None

    def hold_next_reply(self) -> tuple[asyncio.Event, asyncio.Event]:
        """Return (arrived, release): `arrived` is set once the reply is back from the server."""
        arrived, release = asyncio.Event(), asyncio.Event()
        self._held = (arrived, release)
        return arrived, release

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands_sent += 1
        held, self._held = self._held, None
        reply = await super().execute_command(*args, **options)
        if held is not None:
            arrived, release = held
            arrived.set()
            await release.wait()
        return reply


class Process(NamedTuple):
    breaker: CircuitBreaker
    redis: CountingRedis


StartProcess = Callable[..., Process]


def no_retry_redis(port: int) -> CountingRedis:
    # No client-side retries: the breaker, not redis-py, decides how a dead Redis is handled.
    return CountingRedis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0),
                         socket_connect_timeout=0.5)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def start_process(aredis: Redis, redis_url: str, clock: Clock) -> AsyncIterator[StartProcess]:
    clients: list[CountingRedis] = []

    def start(client: CountingRedis | None = None, **overrides: Any) -> Process:
        client = client or cast(CountingRedis, CountingRedis.from_url(redis_url))
        clients.append(client)
        options: dict[str, Any] = {
            "failure_threshold": THRESHOLD, "reset_timeout_s": RESET_S,
            "max_reset_timeout_s": MAX_RESET_S, "probe_lease_s": LEASE_S,
            "closed_cache_s": CLOSED_CACHE_S, "clock": clock,
        } | overrides
        return Process(CircuitBreaker("litellm", redis=client, **options), client)

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["shared_state", "redis_down"])
def breaker(request: pytest.FixtureRequest, start_process: StartProcess) -> CircuitBreaker:
    if request.param == "redis_down":
        return start_process(no_retry_redis(free_port())).breaker  # nothing listens there
    return start_process().breaker


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        decision = await breaker.allow()
        assert decision.is_allowed
        await breaker.record_failure(decision)


async def open_breaker(breaker: CircuitBreaker) -> int:
    """Trip the breaker; return its open-until deadline in ms."""
    await fail(breaker, THRESHOLD)
    snapshot = await breaker.snapshot()
    assert snapshot["state"] == "open"
    return round(snapshot["open_until"] * 1000)


async def report(breaker: CircuitBreaker, decision: Decision, status: int) -> None:
    """What the proxy does with an upstream answer (the contract in gateway/breaker.py)."""
    if status >= 500:
        await breaker.record_failure(decision)
    elif status < 400 or decision.is_probe:
        await breaker.record_success(decision)


async def test_failures_from_two_processes_add_up_and_open_the_breaker_for_both(
    start_process: StartProcess, clock: Clock
) -> None:
    a, b = start_process().breaker, start_process().breaker
    await fail(a, 2)
    await fail(b, 2)
    assert (await a.allow()).is_allowed
    assert (await b.snapshot())["consecutive_failures"] == THRESHOLD - 1

    await fail(b)

    for process in (a, b):
        decision = await process.allow()
        assert not decision.is_allowed
        assert decision.retry_after_s == RESET_S
    snapshot = await a.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["open_until"] == clock() + RESET_S
    assert snapshot["is_shared"] is True


async def test_a_success_in_any_process_ends_the_failure_streak(
    start_process: StartProcess,
) -> None:
    a, b = start_process().breaker, start_process().breaker
    await fail(a, THRESHOLD - 1)
    await b.record_success(await b.allow())
    await fail(a, THRESHOLD - 1)

    assert (await b.allow()).is_allowed
    assert (await a.snapshot())["consecutive_failures"] == THRESHOLD - 1


async def test_exactly_one_of_fifty_concurrent_callers_in_two_processes_gets_the_probe(
    start_process: StartProcess, clock: Clock
) -> None:
    a, b = start_process().breaker, start_process().breaker
    open_until_ms = await open_breaker(a)

    clock.move_to_ms(open_until_ms - 1)
    early = await asyncio.gather(*(p.allow() for p in (a, b) for _ in range(25)))
    assert not any(d.is_allowed for d in early)
    assert {d.retry_after_s for d in early} == {0.001}

    clock.move_to_ms(open_until_ms + 1)
    decisions = await asyncio.gather(*(p.allow() for p in (a, b) for _ in range(25)))

    allowed = [d for d in decisions if d.is_allowed]
    assert len(allowed) == 1
    assert allowed[0].is_probe
    snapshot = await b.snapshot()
    assert snapshot["state"] == "half_open"
    assert snapshot["is_probe_in_flight"] is True


async def test_failed_probe_reopens_with_a_doubled_timeout_capped_at_the_maximum(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    open_until_ms = await open_breaker(breaker)

    for expected_timeout_s in (20.0, 30.0, 30.0):
        clock.move_to_ms(open_until_ms)
        probe = await breaker.allow()
        assert probe.is_probe
        await breaker.record_failure(probe)

        assert (await breaker.allow()).retry_after_s == expected_timeout_s
        assert (await breaker.snapshot())["current_timeout_s"] == expected_timeout_s
        open_until_ms += round(expected_timeout_s * 1000)
        clock.move_to_ms(open_until_ms - 1)
        assert not (await breaker.allow()).is_allowed


async def test_successful_probe_closes_and_resets_failures_and_timeout(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    clock.move_to_ms(await open_breaker(breaker))
    failed_probe = await breaker.allow()
    await breaker.record_failure(failed_probe)
    clock.advance_s(2 * RESET_S)
    probe = await breaker.allow()
    assert probe.is_probe

    await breaker.record_success(probe)

    snapshot = await breaker.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["consecutive_failures"] == 0
    assert snapshot["current_timeout_s"] == RESET_S
    await fail(breaker, THRESHOLD - 1)
    assert (await breaker.allow()).is_allowed
    await fail(breaker)
    assert (await breaker.allow()).retry_after_s == RESET_S


async def test_a_probe_answered_with_a_client_error_closes_the_breaker(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    clock.move_to_ms(await open_breaker(breaker))
    probe = await breaker.allow()

    await report(breaker, probe, 404)

    assert (await breaker.snapshot())["state"] == "closed"


async def test_a_thousand_successes_and_client_errors_never_open_the_breaker(
    start_process: StartProcess,
) -> None:
    a, b = start_process().breaker, start_process().breaker
    # Per ten requests: four 5xx (one short of the threshold), five 4xx, then one 200.
    statuses = [503] * (THRESHOLD - 1) + [404] * 5 + [200]

    for i in range(1000):
        process = (a, b)[i % 2]
        decision = await process.allow()
        assert decision.is_allowed, f"rejected at request {i}"
        await report(process, decision, statuses[i % len(statuses)])

    snapshot = await a.snapshot()
    assert snapshot["state"] == "closed"
    assert snapshot["consecutive_failures"] == 0


async def test_open_breaker_rejects_a_hundred_calls_without_a_redis_round_trip(
    start_process: StartProcess,
) -> None:
    opener, other = start_process(), start_process()
    await open_breaker(opener.breaker)
    assert not (await other.breaker.allow()).is_allowed  # learns the shared deadline once

    sent_before = (opener.redis.commands_sent, other.redis.commands_sent)
    for process in (opener, other):
        for _ in range(100):
            assert not (await process.breaker.allow()).is_allowed

    assert (opener.redis.commands_sent, other.redis.commands_sent) == sent_before


async def warm_up(process: Process, clock: Clock) -> None:
    """Scripts loaded and pool connected, then the closed view left to go stale."""
    await process.breaker.record_success(await process.breaker.allow())
    clock.advance_s(CLOSED_CACHE_S)


async def test_a_thousand_calls_on_a_healthy_breaker_with_a_frozen_clock_cost_one_redis_command(
    start_process: StartProcess, clock: Clock
) -> None:
    process = start_process()
    await warm_up(process, clock)
    sent_before = process.redis.commands_sent

    for _ in range(1000):
        decision = await process.breaker.allow()
        assert decision.is_allowed and not decision.is_probe
        await process.breaker.record_success(decision)

    assert process.redis.commands_sent - sent_before == 1
    assert (await process.breaker.snapshot())["state"] == "closed"


async def test_a_healthy_breaker_sends_at_most_one_redis_command_per_freshness_window(
    start_process: StartProcess, clock: Clock
) -> None:
    process = start_process()
    await warm_up(process, clock)
    sent_before, started_ms = process.redis.commands_sent, clock.now_ms

    for _ in range(1000):
        await process.breaker.record_success(await process.breaker.allow())
        clock.advance_s(0.001)

    elapsed_s = (clock.now_ms - started_ms) / 1000
    sent = process.redis.commands_sent - sent_before
    assert elapsed_s // CLOSED_CACHE_S <= sent <= math.ceil(elapsed_s / CLOSED_CACHE_S) + 1


async def test_with_the_closed_view_off_every_call_costs_one_redis_command(
    start_process: StartProcess, clock: Clock
) -> None:
    process = start_process(closed_cache_s=0)
    await warm_up(process, clock)
    sent_before = process.redis.commands_sent

    await process.breaker.record_success(await process.breaker.allow())

    assert process.redis.commands_sent - sent_before == 2


async def test_another_process_sees_a_failure_within_the_window_and_its_success_ends_the_streak(
    start_process: StartProcess, clock: Clock
) -> None:
    a, b = start_process(), start_process()
    await warm_up(b, clock)
    await b.breaker.record_success(await b.breaker.allow())  # b's view: closed, no failures
    await fail(a.breaker)

    within_window = await b.breaker.allow()
    await b.breaker.record_success(within_window)
    assert within_window.failures_seen == 0
    assert (await a.breaker.snapshot())["consecutive_failures"] == 1  # the documented bound

    clock.advance_s(CLOSED_CACHE_S)
    after_window = await b.breaker.allow()
    assert after_window.failures_seen == 1
    await b.breaker.record_success(after_window)
    assert (await a.breaker.snapshot())["consecutive_failures"] == 0

    sent_before = b.redis.commands_sent  # the reset left no failures: calls are free again
    await b.breaker.record_success(await b.breaker.allow())
    assert b.redis.commands_sent == sent_before


async def test_a_success_recorded_after_the_window_ends_a_streak_that_began_during_the_call(
    start_process: StartProcess, clock: Clock
) -> None:
    a, b = start_process(), start_process()
    await warm_up(b, clock)
    await b.breaker.record_success(await b.breaker.allow())
    long_call = await b.breaker.allow()  # answered from the closed view
    await fail(a.breaker, THRESHOLD - 1)
    clock.advance_s(CLOSED_CACHE_S)

    await b.breaker.record_success(long_call)

    assert (await a.breaker.snapshot())["consecutive_failures"] == 0


async def test_a_process_stops_sending_within_the_window_after_another_opens_the_breaker(
    start_process: StartProcess, clock: Clock
) -> None:
    opener, other = start_process(), start_process()
    await warm_up(other, clock)
    await other.breaker.record_success(await other.breaker.allow())
    await open_breaker(opener.breaker)

    clock.advance_s(CLOSED_CACHE_S - 0.001)
    assert (await other.breaker.allow()).is_allowed  # the documented bound
    clock.advance_s(0.001)
    rejected = await other.breaker.allow()
    assert not rejected.is_allowed
    assert rejected.retry_after_s == RESET_S - CLOSED_CACHE_S

    sent_before = other.redis.commands_sent
    for _ in range(100):
        assert not (await other.breaker.allow()).is_allowed
    assert other.redis.commands_sent == sent_before


async def test_a_local_failure_drops_the_closed_view_at_once(
    breaker: CircuitBreaker,
) -> None:
    await breaker.record_success(await breaker.allow())
    from_view = await breaker.allow()

    await breaker.record_failure(from_view)

    decision = await breaker.allow()
    assert decision.failures_seen == 1
    await breaker.record_success(decision)
    assert (await breaker.snapshot())["consecutive_failures"] == 0


async def test_a_closed_reply_overtaken_by_a_local_failure_does_not_restore_the_view(
    start_process: StartProcess, clock: Clock
) -> None:
    process = start_process()
    earlier = await process.breaker.allow()
    clock.advance_s(CLOSED_CACHE_S)
    arrived, release = process.redis.hold_next_reply()
    slow = asyncio.create_task(process.breaker.allow())
    await arrived.wait()  # Redis answered "closed, no failures"; the answer is still on its way

    await process.breaker.record_failure(earlier)
    release.set()

    assert (await slow).failures_seen == 0
    assert (await process.breaker.allow()).failures_seen == 1


async def test_callers_arriving_while_a_stale_view_is_renewed_wait_for_that_one_reply(
    start_process: StartProcess, clock: Clock
) -> None:
    process = start_process()
    await warm_up(process, clock)
    sent_before = process.redis.commands_sent
    arrived, release = process.redis.hold_next_reply()
    renewing = asyncio.create_task(process.breaker.allow())
    await arrived.wait()  # Redis answered "closed, no failures"; the answer is still on its way

    waiting = [asyncio.create_task(process.breaker.allow()) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    decisions = await asyncio.gather(renewing, *waiting)

    assert all(d.is_allowed and d.failures_seen == 0 and not d.is_probe for d in decisions)
    assert process.redis.commands_sent - sent_before == 1


async def test_callers_waiting_on_a_renewal_that_shows_failures_each_ask_for_themselves(
    start_process: StartProcess, clock: Clock
) -> None:
    process, other = start_process(), start_process()
    await warm_up(process, clock)
    await fail(other.breaker)
    sent_before = process.redis.commands_sent
    arrived, release = process.redis.hold_next_reply()
    renewing = asyncio.create_task(process.breaker.allow())
    await arrived.wait()  # read one failure

    waiting = [asyncio.create_task(process.breaker.allow()) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    decisions = await asyncio.gather(renewing, *waiting)

    # Each saw the streak itself, so each success it reports can end it, exactly as before.
    assert [d.failures_seen for d in decisions] == [1, 1, 1, 1]
    assert process.redis.commands_sent - sent_before == 4
    await process.breaker.record_success(decisions[1])
    assert (await other.breaker.snapshot())["consecutive_failures"] == 0


def test_a_closed_view_longer_than_the_reset_timeout_is_refused(aredis: Redis) -> None:
    # It could let requests through beside the single probe of a breaker opened elsewhere.
    with pytest.raises(ValueError, match="closed_cache_s"):
        CircuitBreaker("litellm", redis=aredis, reset_timeout_s=1.0, closed_cache_s=1.5)


async def test_lapsed_probe_lease_lets_another_process_probe(
    start_process: StartProcess, clock: Clock
) -> None:
    crashed, survivor = start_process().breaker, start_process().breaker
    open_until_ms = await open_breaker(crashed)
    clock.move_to_ms(open_until_ms)
    lost_probe = await crashed.allow()
    assert lost_probe.is_probe

    clock.move_to_ms(open_until_ms + round(LEASE_S * 1000) - 1)
    waiting = await survivor.allow()
    assert not waiting.is_allowed
    assert waiting.retry_after_s == 0.001

    clock.move_to_ms(open_until_ms + round(LEASE_S * 1000))
    with capture_logs() as logs:
        probe = await survivor.allow()
    assert probe.is_probe
    assert [e["event"] for e in logs] == ["breaker_probe_lease_lapsed"]

    await crashed.record_failure(lost_probe)  # the old prober's late answer decides nothing
    assert (await survivor.snapshot())["state"] == "half_open"
    await survivor.record_success(probe)
    assert (await crashed.allow()).is_allowed


async def test_released_probe_goes_to_the_next_caller_at_once(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    clock.move_to_ms(await open_breaker(breaker))
    probe = await breaker.allow()
    assert not (await breaker.allow()).is_allowed

    await breaker.release(probe)

    assert (await breaker.allow()).is_probe


async def test_rejections_and_answers_of_calls_started_before_opening_change_nothing(
    breaker: CircuitBreaker,
) -> None:
    decisions = [await breaker.allow() for _ in range(THRESHOLD + 1)]
    for decision in decisions[:THRESHOLD]:
        await breaker.record_failure(decision)
    straggler = decisions[THRESHOLD]
    rejected = await breaker.allow()
    assert not rejected.is_allowed

    for _ in range(10):
        await breaker.record_failure(rejected)
    await breaker.record_failure(straggler)
    await breaker.record_success(rejected)
    await breaker.record_success(straggler)

    snapshot = await breaker.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["current_timeout_s"] == RESET_S
    assert (await breaker.allow()).retry_after_s == RESET_S


async def test_transitions_are_logged_counted_and_reported_to_the_hook(
    start_process: StartProcess, clock: Clock
) -> None:
    seen: list[tuple[str, str, str]] = []
    breaker = start_process(on_transition=lambda *t: seen.append(t)).breaker

    with capture_logs() as logs:
        clock.move_to_ms(await open_breaker(breaker))
        await breaker.record_failure(await breaker.allow())
        clock.advance_s(2 * RESET_S)
        await breaker.record_success(await breaker.allow())

    events = [(e["event"], e["upstream"], e["previous_state"], e["timeout_s"]) for e in logs]
    assert events == [
        ("breaker_opened", "litellm", "closed", RESET_S),
        ("breaker_half_open", "litellm", "open", RESET_S),
        ("breaker_opened", "litellm", "half_open", 2 * RESET_S),
        ("breaker_half_open", "litellm", "open", 2 * RESET_S),
        ("breaker_closed", "litellm", "half_open", RESET_S),
    ]
    assert seen == [
        ("litellm", "closed", "open"), ("litellm", "open", "half_open"),
        ("litellm", "half_open", "open"), ("litellm", "open", "half_open"),
        ("litellm", "half_open", "closed"),
    ]
    assert breaker.transition_counts == {"open": 2, "half_open": 2, "closed": 1}


async def test_breakers_of_different_upstreams_are_independent(
    start_process: StartProcess, aredis: Redis, clock: Clock
) -> None:
    litellm = start_process().breaker
    ollama = CircuitBreaker("ollama", redis=aredis, failure_threshold=THRESHOLD, clock=clock)
    await open_breaker(litellm)

    assert (await ollama.allow()).is_allowed
    assert (await ollama.snapshot())["state"] == "closed"


async def test_without_redis_the_breaker_runs_on_local_state_and_returns_to_redis_later(
    redis_server: RedisServer, start_process: StartProcess, clock: Clock
) -> None:
    process = start_process(no_retry_redis(redis_server.port), redis_retry_after_s=5.0)
    breaker = process.breaker
    clock.move_to_ms(await open_breaker(breaker))
    redis_server.stop()

    with capture_logs() as logs:
        decision = await breaker.allow()
    assert decision.is_allowed and not decision.is_probe  # local state starts closed
    assert [e["event"] for e in logs] == ["breaker_redis_unavailable"]

    sent_before = process.redis.commands_sent
    await fail(breaker, THRESHOLD)
    assert not (await breaker.allow()).is_allowed
    assert process.redis.commands_sent == sent_before  # no new attempt before retry_after
    assert (await breaker.snapshot())["is_shared"] is False

    redis_server.start()  # same port, back and empty
    clock.advance_s(RESET_S)
    with capture_logs() as logs:
        decision = await breaker.allow()
    assert decision.is_allowed and not decision.is_probe
    assert [e["event"] for e in logs] == ["breaker_redis_recovered"]
    assert (await breaker.snapshot())["is_shared"] is True


async def test_a_redis_that_never_answers_costs_at_most_redis_timeout(
    start_process: StartProcess,
) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the command, never replies

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        breaker = start_process(no_retry_redis(port), redis_timeout_s=0.05).breaker
        loop = asyncio.get_running_loop()
        started = loop.time()
        decision = await asyncio.wait_for(breaker.allow(), timeout=5)
        elapsed_s = loop.time() - started
    finally:
        server.close()
        await server.wait_closed()

    assert decision.is_allowed
    assert elapsed_s < 1.0
