"""Budget reservations on real Redis: exact under cross-process races, all-or-nothing, leases."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from billing import periods
from gateway.budgets import (
    Budget,
    BudgetRef,
    BudgetReservations,
    ReserveStatus,
    SettleStatus,
    to_micro,
)
from gateway.limits import LimiterUnavailable, Scope
from tests.clock import FakeClock

NOON_S = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
DAY_S = 86_400


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_S)


@pytest.fixture
def budgets(aredis: aioredis.Redis, clock: FakeClock) -> BudgetReservations:
    return BudgetReservations(aredis, clock=clock)


def tenant_a_budget(limit: str, period: str = periods.DAILY, soft_pct: int | None = None) -> Budget:
    soft = None if soft_pct is None else Decimal(soft_pct)
    return Budget(Scope.TENANT, "tenant-a", Decimal(limit), period, soft)


def key_a_budget(limit: str, period: str = periods.MONTHLY) -> Budget:
    return Budget(Scope.KEY, "key-a", Decimal(limit), period)


async def open_counters(budgets: BudgetReservations, *items: Budget) -> None:
    # What the caller does after COUNTER_MISSING: rebuild from the ledger (empty here).
    for budget in items:
        await budgets.restore_spent(budget, Decimal(0))


# --- across processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    tenant_budget: Budget
    key_budget: Budget | None
    requests: int
    max_cost: Decimal
    actual_cost: Decimal


def _reserve_worker(
    redis_url: str,
    now_s: float,
    worker: int,
    rounds: list[Round],
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[list[tuple[int, int]]],
) -> None:
    """Per round: wait for every process, reserve all at once, settle what got through."""

    async def run() -> list[tuple[int, int]]:
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=10)
        client = aioredis.Redis(connection_pool=pool)
        budgets = BudgetReservations(client, clock=lambda: now_s)
        await client.ping()
        outcome: list[tuple[int, int]] = []
        for number, spec in enumerate(rounds):
            await asyncio.to_thread(barrier.wait)
            ids = [f"r{number}-w{worker}-{i}" for i in range(spec.requests)]
            reserved = await asyncio.gather(
                *(
                    budgets.reserve(rid, spec.tenant_budget, spec.key_budget, spec.max_cost)
                    for rid in ids
                )
            )
            admitted = [rid for rid, res in zip(ids, reserved, strict=True) if res.admitted]
            # Settling frees (max - actual) per request, room that late reservations of the
            # other process could rightly take; count the race first, then settle.
            await asyncio.to_thread(barrier.wait)
            settled = await asyncio.gather(
                *(budgets.settle(rid, spec.actual_cost) for rid in admitted)
            )
            crossings = sum(len(s.soft_limit_crossed) for s in settled)
            outcome.append((len(admitted), crossings))
        await client.aclose()
        await pool.disconnect()
        return outcome

    results.put(asyncio.run(run()))


async def run_rounds(redis_url: str, rounds: list[Round], processes_n: int) -> list[list[int]]:
    """Returns, per round, [admitted, soft-limit crossings] summed over the processes."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(processes_n)
    results: multiprocessing.Queue[list[tuple[int, int]]] = spawn.Queue()
    procs = [
        spawn.Process(target=_reserve_worker, args=(redis_url, NOON_S, w, rounds, barrier, results))
        for w in range(processes_n)
    ]
    for p in procs:
        p.start()
    per_process = [await asyncio.to_thread(results.get, True, 60) for _ in procs]
    for p in procs:
        await asyncio.to_thread(p.join, 10)
    return [
        [
            sum(outcomes[r][0] for outcomes in per_process),
            sum(outcomes[r][1] for outcomes in per_process),
        ]
        for r in range(len(rounds))
    ]


async def test_200_simultaneous_reservations_with_room_for_10_admit_exactly_10_every_time(
    budgets: BudgetReservations, redis_url: str
) -> None:
    rounds = [
        Round(
            tenant_budget=Budget(Scope.TENANT, f"tenant-{n}", Decimal("1.00"), periods.DAILY),
            key_budget=Budget(Scope.KEY, f"key-{n}", Decimal("50"), periods.MONTHLY),
            requests=100,
            max_cost=Decimal("0.10"),
            actual_cost=Decimal("0.07"),
        )
        for n in range(20)
    ]
    for spec in rounds:
        assert spec.key_budget is not None
        await open_counters(budgets, spec.tenant_budget, spec.key_budget)
    outcomes = await run_rounds(redis_url, rounds, processes_n=2)
    assert [admitted for admitted, _ in outcomes] == [10] * 20
    for spec in rounds:
        state = await budgets.read_state(spec.tenant_budget)
        assert state.spent_usd == Decimal("0.70")
        assert state.spent_usd <= spec.tenant_budget.limit_usd
        assert state.reserved_usd == 0


async def test_soft_limit_alert_is_flagged_exactly_once_per_period_under_concurrency(
    budgets: BudgetReservations, redis_url: str, clock: FakeClock
) -> None:
    tenant = tenant_a_budget("100", soft_pct=50)  # alert at $50
    await open_counters(budgets, tenant)
    spec = Round(tenant, None, requests=60, max_cost=Decimal("1"), actual_cost=Decimal("0.90"))
    outcomes = await run_rounds(redis_url, [spec, spec], processes_n=2)
    # Round 1: 100 of 120 fit the $100 limit at $1 each and settle $90, crossing $50 once.
    # Round 2: 10 more fit and settle to $99; the alert is already spent for the day.
    assert [crossings for _, crossings in outcomes] == [1, 0]
    # The next day is a new period with its own alert.
    clock.advance(DAY_S)
    await open_counters(budgets, tenant)
    await budgets.reserve("next-day", tenant, None, Decimal("60"))
    settled = await budgets.settle("next-day", Decimal("55"))
    assert settled.soft_limit_crossed == (
        BudgetRef(Scope.TENANT, "tenant-a", "daily", "2026-11-27"),
    )


# --- all or nothing -----------------------------------------------------------------------


async def test_key_with_room_is_not_charged_when_its_tenant_has_none(
    budgets: BudgetReservations,
) -> None:
    tenant, key = tenant_a_budget("1.00"), key_a_budget("100")
    await open_counters(budgets, tenant, key)
    await budgets.restore_spent(tenant, Decimal("0.95"), overwrite=True)
    result = await budgets.reserve("r1", tenant, key, Decimal("0.10"))
    assert result.status is ReserveStatus.REJECTED
    assert result.rejected_by == BudgetRef(Scope.TENANT, "tenant-a", "daily", "2026-11-26")
    assert result.spent_usd == Decimal("0.95")
    for budget in (tenant, key):
        state = await budgets.read_state(budget)
        assert state.reserved_usd == 0
    assert (await budgets.read_state(key)).spent_usd == 0
    assert (await budgets.settle("r1", Decimal("0.10"))).status is SettleStatus.UNKNOWN
    assert (await budgets.read_state(key)).spent_usd == 0


async def test_rejection_names_the_key_budget_and_its_period(
    budgets: BudgetReservations,
) -> None:
    tenant, key = tenant_a_budget("100"), key_a_budget("0.50", period=periods.WEEKLY)
    await open_counters(budgets, tenant, key)
    result = await budgets.reserve("r1", tenant, key, Decimal("0.60"))
    assert result.rejected_by == BudgetRef(Scope.KEY, "key-a", "weekly", "2026-W48")
    assert (await budgets.read_state(tenant)).reserved_usd == 0


# --- settle, release, leases --------------------------------------------------------------


async def test_settling_twice_charges_once(budgets: BudgetReservations) -> None:
    tenant, key = tenant_a_budget("10"), key_a_budget("10")
    await open_counters(budgets, tenant, key)
    assert (await budgets.reserve("r1", tenant, key, Decimal("2"))).admitted
    assert (await budgets.read_state(tenant)).reserved_usd == 2
    first = await budgets.settle("r1", Decimal("1.234567"))
    second = await budgets.settle("r1", Decimal("1.234567"))
    assert (first.status, second.status) == (SettleStatus.DONE, SettleStatus.ALREADY_DONE)
    for budget in (tenant, key):
        state = await budgets.read_state(budget)
        assert (state.spent_usd, state.reserved_usd) == (Decimal("1.234567"), 0)


async def test_release_frees_the_reservation_without_a_charge(
    budgets: BudgetReservations,
) -> None:
    tenant = tenant_a_budget("1")
    await open_counters(budgets, tenant)
    assert (await budgets.reserve("failed", tenant, None, Decimal("1"))).admitted
    assert not (await budgets.reserve("blocked", tenant, None, Decimal("0.01"))).admitted
    assert (await budgets.release("failed")).status is SettleStatus.DONE
    # A settle after the release must not charge what never ran to completion.
    assert (await budgets.settle("failed", Decimal("1"))).status is SettleStatus.ALREADY_DONE
    state = await budgets.read_state(tenant)
    assert (state.spent_usd, state.reserved_usd) == (0, 0)
    assert (await budgets.reserve("next", tenant, None, Decimal("1"))).admitted


async def test_settling_an_unknown_request_is_a_safe_no_op(
    budgets: BudgetReservations,
) -> None:
    assert (await budgets.settle("never-reserved", Decimal("5"))).status is SettleStatus.UNKNOWN
    assert (await budgets.release("never-reserved")).status is SettleStatus.UNKNOWN


async def test_same_request_id_cannot_reserve_twice(budgets: BudgetReservations) -> None:
    tenant = tenant_a_budget("10")
    await open_counters(budgets, tenant)
    assert (await budgets.reserve("r1", tenant, None, Decimal("3"))).admitted
    again = await budgets.reserve("r1", tenant, None, Decimal("3"))
    assert again.status is ReserveStatus.DUPLICATE
    assert (await budgets.read_state(tenant)).reserved_usd == 3


async def test_expired_reservation_of_a_crashed_process_is_reclaimed(
    aredis: aioredis.Redis, clock: FakeClock
) -> None:
    budgets = BudgetReservations(aredis, clock=clock, lease_s=600)
    tenant = tenant_a_budget("1")
    await open_counters(budgets, tenant)
    assert (await budgets.reserve("crashed", tenant, None, Decimal("1"))).admitted
    clock.advance(599)
    assert not (await budgets.reserve("r1", tenant, None, Decimal("0.50"))).admitted
    clock.advance(2)
    assert (await budgets.reserve("r2", tenant, None, Decimal("0.50"))).admitted
    assert (await budgets.read_state(tenant)).reserved_usd == Decimal("0.50")
    # The "crashed" process was only slow: its late settle charges what it used, and does
    # not give back a reservation the sweep already reclaimed.
    late = await budgets.settle("crashed", Decimal("0.30"))
    assert late.status is SettleStatus.DONE
    state = await budgets.read_state(tenant)
    assert (state.spent_usd, state.reserved_usd) == (Decimal("0.30"), Decimal("0.50"))


# --- counters and periods -----------------------------------------------------------------


async def test_missing_counter_is_reported_not_read_as_zero(
    budgets: BudgetReservations,
) -> None:
    tenant, key = tenant_a_budget("10"), key_a_budget("10")
    await open_counters(budgets, tenant)
    assert await budgets.is_counter_missing(key)
    result = await budgets.reserve("r1", tenant, key, Decimal("1"))
    assert result.status is ReserveStatus.COUNTER_MISSING
    assert result.missing == BudgetRef(Scope.KEY, "key-a", "monthly", "2026-11")
    assert (await budgets.read_state(tenant)).reserved_usd == 0
    assert await budgets.restore_spent(key, Decimal("9.50"))
    # A second rebuild (another process) does not clobber the first.
    assert not await budgets.restore_spent(key, Decimal("0"))
    assert not await budgets.is_counter_missing(key)
    assert (await budgets.reserve("r1", tenant, key, Decimal("1"))).rejected_by is not None
    assert await budgets.restore_spent(key, Decimal("2"), overwrite=True)
    assert (await budgets.reserve("r1", tenant, key, Decimal("1"))).admitted


async def test_a_new_day_starts_a_new_daily_period(
    budgets: BudgetReservations, clock: FakeClock
) -> None:
    tenant = tenant_a_budget("1")
    await open_counters(budgets, tenant)
    assert (await budgets.reserve("today", tenant, None, Decimal("1"))).admitted
    await budgets.settle("today", Decimal("1"))
    assert not (await budgets.reserve("still-today", tenant, None, Decimal("0.01"))).admitted
    clock.advance(DAY_S)
    tomorrow = await budgets.reserve("tomorrow", tenant, None, Decimal("0.01"))
    assert tomorrow.missing == BudgetRef(Scope.TENANT, "tenant-a", "daily", "2026-11-27")
    await open_counters(budgets, tenant)
    assert (await budgets.reserve("tomorrow", tenant, None, Decimal("0.01"))).admitted


def test_costs_round_up_and_limits_round_down_to_the_micro_dollar() -> None:
    from decimal import ROUND_FLOOR

    assert to_micro(Decimal("0.0000001")) == 1
    assert to_micro(Decimal("1.0000009"), rounding=ROUND_FLOOR) == 1_000_000
    with pytest.raises(TypeError):
        to_micro(0.1)  # type: ignore[arg-type]


# --- Redis unavailable --------------------------------------------------------------------


@pytest.fixture
async def dead_budgets() -> AsyncIterator[BudgetReservations]:
    client = aioredis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    yield BudgetReservations(client, timeout_s=0.5)
    await client.aclose()


async def test_budgets_fail_closed_when_redis_is_down(
    dead_budgets: BudgetReservations,
) -> None:
    tenant = tenant_a_budget("10")
    with pytest.raises(LimiterUnavailable):
        await dead_budgets.reserve("r1", tenant, None, Decimal("1"))
    with pytest.raises(LimiterUnavailable):
        await dead_budgets.settle("r1", Decimal("1"))
    with pytest.raises(LimiterUnavailable):
        await dead_budgets.restore_spent(tenant, Decimal("0"))
    with pytest.raises(LimiterUnavailable):
        await dead_budgets.read_state(tenant)
