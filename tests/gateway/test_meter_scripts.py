"""The composed metering scripts on real Redis: one round trip per phase, all or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from billing import periods
from billing.events import FIELD, STREAM
from gateway.budgets import (
    Budget,
    BudgetReservations,
    ReserveStatus,
    SettleStatus,
    prepare_settle,
    settle_result,
)
from gateway.limits import AdmitCall, RateLimiter, RatePolicy, Scope, ScopeLimits, rl_key
from gateway.meter_scripts import MeterScripts
from tests.clock import FakeClock

pytestmark = pytest.mark.smoke

NOON_S = 1_795_694_400.0  # 2026-11-26 12:00 UTC
TENANT_BUDGET = Budget(Scope.TENANT, "t1", Decimal("1.00"), periods.MONTHLY)


@pytest.fixture
def parts(aredis: aioredis.Redis) -> tuple[RateLimiter, BudgetReservations, MeterScripts]:
    clock = FakeClock(NOON_S)
    return (
        RateLimiter(aredis, fail_open=False, clock=clock),
        BudgetReservations(aredis, clock=clock),
        MeterScripts(aredis, timeout_s=1.0),
    )


def one_per_minute(limiter: RateLimiter, request_id: str) -> AdmitCall:
    return limiter.prepare_admit(
        request_id=request_id,
        key=ScopeLimits(Scope.KEY, "k1", RatePolicy(requests_per_minute=1, max_concurrent=5)),
        tenant=ScopeLimits(Scope.TENANT, "t1", RatePolicy()),
        estimated_tokens=10,
    )


async def test_a_rate_refusal_leaves_no_reservation_behind(parts, aredis) -> None:
    limiter, budgets, scripts = parts
    await budgets.restore_spent(TENANT_BUDGET, Decimal(0))
    outcomes = []
    for request_id in ("r1", "r2"):
        rate = one_per_minute(limiter, request_id)
        reserve = budgets.prepare_reserve(request_id, TENANT_BUDGET, None, Decimal("0.25"))
        rate_reply, budget_reply = await scripts.admit(rate, reserve)
        outcomes.append((rate.result(rate_reply).admitted, reserve.result(budget_reply).status))

    assert outcomes == [(True, ReserveStatus.RESERVED), (False, ReserveStatus.RESERVED)]
    # Only r1 holds money: r2's reservation was given back inside the same script.
    state = await budgets.read_state(TENANT_BUDGET)
    assert state.reserved_usd == Decimal("0.25")
    assert (await budgets.release("r2")).status == SettleStatus.ALREADY_DONE


async def test_a_budget_refusal_does_not_touch_the_rate_limits(parts, aredis) -> None:
    limiter, budgets, scripts = parts
    await budgets.restore_spent(TENANT_BUDGET, Decimal("0.90"))
    rate = one_per_minute(limiter, "r1")
    reserve = budgets.prepare_reserve("r1", TENANT_BUDGET, None, Decimal("0.25"))

    rate_reply, budget_reply = await scripts.admit(rate, reserve)

    assert rate_reply is None
    assert reserve.result(budget_reply).status == ReserveStatus.REJECTED
    assert await aredis.exists(rl_key(Scope.KEY, "k1", "req"), rl_key(Scope.KEY, "k1", "conc")) == 0


async def test_a_missing_counter_writes_nothing(parts, aredis) -> None:
    limiter, budgets, scripts = parts
    rate = one_per_minute(limiter, "r1")
    reserve = budgets.prepare_reserve("r1", TENANT_BUDGET, None, Decimal("0.25"))

    rate_reply, budget_reply = await scripts.admit(rate, reserve)

    assert rate_reply is None
    assert reserve.result(budget_reply).status == ReserveStatus.COUNTER_MISSING
    assert await aredis.keys("aicc:rl:*") == []
    assert await aredis.keys("aicc:budget:res:*") == []


async def test_settle_charges_frees_the_slot_and_appends_the_event(parts, aredis) -> None:
    limiter, budgets, scripts = parts
    await budgets.restore_spent(TENANT_BUDGET, Decimal(0))
    rate = one_per_minute(limiter, "r1")
    reserve = budgets.prepare_reserve("r1", TENANT_BUDGET, None, Decimal("0.25"))
    rate_reply, _ = await scripts.admit(rate, reserve)
    admission = rate.result(rate_reply).admission
    assert await aredis.zcard(rl_key(Scope.KEY, "k1", "conc")) == 1

    end = limiter.prepare_end(admission, actual_tokens=7, is_release=True)
    budget_reply = await scripts.settle(end, prepare_settle("r1", Decimal("0.05")), b'{"e":1}')
    end.applied()

    assert settle_result(budget_reply).status == SettleStatus.DONE
    assert await aredis.zcard(rl_key(Scope.KEY, "k1", "conc")) == 0
    state = await budgets.read_state(TENANT_BUDGET)
    assert (state.spent_usd, state.reserved_usd) == (Decimal("0.05"), Decimal(0))
    [(_, fields)] = await aredis.xrange(STREAM)
    assert fields == {FIELD: b'{"e":1}'}
    assert limiter.prepare_end(admission, actual_tokens=7, is_release=True) is None


async def test_settle_with_nothing_reserved_only_appends_the_event(parts, aredis) -> None:
    _, _, scripts = parts
    assert await scripts.settle(None, None, b"{}") is None
    assert await aredis.xlen(STREAM) == 1
