"""Hard USD budgets per tenant and per key, reserved before a request and settled after it.

Contract: `BudgetReservations.reserve(request_id, tenant_budget, key_budget, max_cost)`
reserves `max_cost` on both budgets or on neither (one Lua script, one round trip) and records
the reservation under the request id. `settle(request_id, actual_cost)` gives the reservation
back and charges the actual cost exactly once; `release(request_id)` gives it back without a
charge (the request failed). Settling or releasing twice, or an unknown id, changes nothing.
Budgets fail CLOSED: any Redis error or timeout raises `LimiterUnavailable` (-> 503). The
gateway itself runs these scripts through `prepare_reserve` / `prepare_settle`, composed with
the rate limits' into one script per metering phase (gateway.meter_scripts); the methods here
run the budget part alone, with the same keys, arguments and reply reading.

Amounts are integer micro-USD in Redis and `Decimal` in Python. Costs round up to the next
micro-dollar and limits round down, so rounding never lets a request through that the exact
amounts would refuse.

Periods are UTC calendar periods; the period key ("2026-11-26", "2026-W48", "2026-11",
"total", from `billing.periods`) is computed from `clock` at reservation time. A reservation
is settled in the period it was made in, even when the request ends after midnight.

Redis key layout ({scope} is "tenant" or "key", {owner_id} the tenant id / key public id):
    aicc:budget:{scope}:{owner_id}:{period_key}:spent     integer µUSD charged (settled)
    aicc:budget:{scope}:{owner_id}:{period_key}:reserved  integer µUSD held by open leases
    aicc:budget:{scope}:{owner_id}:{period_key}:leases    ZSET "<request_id>|<µUSD>" -> expiry ms
    aicc:budget:{scope}:{owner_id}:{period_key}:soft-alert  set once when the soft limit is hit
    aicc:budget:res:{request_id}                          the reservation record (JSON array)
Period keys expire 40 days after their period ends ("total" never does); records live for the
lease plus a day, which is how long settle stays idempotent.

Expired reservations: each reservation holds a lease (default 10 min). A crashed process never
settles, so `reserve` first sweeps leases whose expiry has passed on the budgets it touches
(bounded to 100 per call) and gives their amounts back: reclaim is lazy, exact and needs no
background job, and a budget nobody uses has nobody waiting for its room. A settle that
arrives after its lease ran out still charges the actual cost (the request did run) but does
not give the amount back a second time: removing the lease member decides who subtracts.

Lost counters: a missing `spent` key (Redis restarted without persistence, or a new period)
is never read as zero. `reserve` answers `status=COUNTER_MISSING` naming the budget; the caller
rebuilds it from the ledger with `restore_spent(...)` and retries. `restore_spent` only
creates a missing counter unless told to overwrite, so concurrent rebuilds cannot clobber
charges made in between. A settle that finds its counter missing skips the charge and says so
(the ledger has it and the rebuild sums it).

Soft limit: the settle whose charge brings `spent` to at least `soft_limit_pct` of the limit
sets the period's alert key with SET NX inside the script, so exactly one settle per period,
over all processes, reports `soft_limit_crossed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from billing import periods
from gateway.limits import (
    DEFAULT_LEASE_S,
    KEY_PREFIX,
    LimiterUnavailable,
    Scope,
    guarded,
)
from gateway.lua import load_script

MICRO = Decimal("0.000001")
PERIOD_RETENTION = timedelta(days=40)
RECORD_RETENTION_S = 86_400
PERIOD_PART_CACHE_SIZE = 10_000

__all__ = [
    "Budget",
    "BudgetRef",
    "BudgetReservations",
    "BudgetState",
    "LimiterUnavailable",
    "ReservationResult",
    "ReserveStatus",
    "SettleResult",
    "SettleStatus",
]


class ReserveStatus(StrEnum):
    RESERVED = "reserved"
    REJECTED = "rejected"  # would cross `rejected_by`
    DUPLICATE = "duplicate"  # this request id already holds a reservation
    COUNTER_MISSING = "counter_missing"  # rebuild `missing` with restore_spent, then retry


class SettleStatus(StrEnum):
    DONE = "done"
    ALREADY_DONE = "already_done"
    UNKNOWN = "unknown"  # never reserved, or its record is long gone


@dataclass(frozen=True)
class Budget:
    scope: Scope
    owner_id: str
    limit_usd: Decimal
    period: str  # billing.periods.DAILY / WEEKLY / MONTHLY / TOTAL
    soft_limit_pct: Decimal | None = None  # e.g. Decimal(80)


@dataclass(frozen=True)
class BudgetRef:
    """One budget in one period: what a rejection or an alert is about."""

    scope: Scope
    owner_id: str
    period: str
    period_key: str

    @property
    def label(self) -> str:
        return f"{self.scope.value}|{self.owner_id}|{self.period}|{self.period_key}"

    @classmethod
    def from_label(cls, label: str) -> BudgetRef:
        scope, owner_id, period, period_key = label.split("|")
        return cls(Scope(scope), owner_id, period, period_key)


@dataclass(slots=True)
class ReservationResult:
    status: ReserveStatus
    rejected_by: BudgetRef | None = None
    spent_usd: Decimal | None = None  # of `rejected_by`, when rejected
    reserved_usd: Decimal | None = None
    missing: BudgetRef | None = None
    headroom_usd: Decimal | None = None  # when reserved: the least any budget has left

    @property
    def admitted(self) -> bool:
        return self.status is ReserveStatus.RESERVED


@dataclass(slots=True)
class SettleResult:
    status: SettleStatus
    soft_limit_crossed: tuple[BudgetRef, ...] = ()
    counter_missing: tuple[BudgetRef, ...] = ()


@dataclass(frozen=True)
class BudgetState:
    spent_usd: Decimal | None  # None: the counter is missing and must be rebuilt
    reserved_usd: Decimal


def to_micro(amount: Decimal, *, rounding: str = ROUND_CEILING) -> int:
    if not isinstance(amount, Decimal):
        raise TypeError("money is Decimal")
    return int((amount / MICRO).to_integral_value(rounding=rounding))


def from_micro(micro: int) -> Decimal:
    return (Decimal(micro) * MICRO).quantize(MICRO)


def _budget_key(ref: BudgetRef, suffix: str) -> str:
    return f"{KEY_PREFIX}:budget:{ref.scope.value}:{ref.owner_id}:{ref.period_key}:{suffix}"


def _record_key(request_id: str) -> str:
    return f"{KEY_PREFIX}:budget:res:{request_id}"


@dataclass(slots=True)
class ScriptCall:
    keys: list[str]
    args: list[Any]


@dataclass(slots=True)
class _PeriodPart:
    ref: BudgetRef
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(slots=True)
class ReserveCall:
    """One reservation as script keys and arguments; `result` reads the script's reply."""

    keys: list[str]
    args: list[Any]
    refs: tuple[BudgetRef, ...]

    def result(self, raw: list[Any]) -> ReservationResult:
        # The fourth field: what is reserved (rejected) or the least headroom left (reserved).
        status, index, spent, amount = (int(x) for x in raw)
        if status == 1:
            return ReservationResult(ReserveStatus.RESERVED, headroom_usd=from_micro(amount))
        if status == 2:
            return ReservationResult(ReserveStatus.DUPLICATE)
        if status == 3:
            return ReservationResult(ReserveStatus.COUNTER_MISSING, missing=self.refs[index - 1])
        return ReservationResult(
            ReserveStatus.REJECTED,
            rejected_by=self.refs[index - 1],
            spent_usd=from_micro(spent),
            reserved_usd=from_micro(amount),
        )


def prepare_settle(request_id: str, actual_cost: Decimal) -> ScriptCall:
    return ScriptCall([_record_key(request_id)], [to_micro(actual_cost), "settle"])


def prepare_release(request_id: str) -> ScriptCall:
    return ScriptCall([_record_key(request_id)], [0, "release"])


def settle_result(raw: list[Any]) -> SettleResult:
    status = int(raw[0])
    if status == 0:
        return SettleResult(SettleStatus.UNKNOWN)
    if status == 2:
        return SettleResult(SettleStatus.ALREADY_DONE)
    crossed: list[BudgetRef] = []
    missing: list[BudgetRef] = []
    for i in range(1, len(raw), 3):
        is_crossed, is_missing = int(raw[i + 1]), int(raw[i + 2])
        if not (is_crossed or is_missing):
            continue  # the usual case: nothing to report about this budget
        label = raw[i].decode() if isinstance(raw[i], bytes) else str(raw[i])
        ref = BudgetRef.from_label(label)
        if is_crossed:
            crossed.append(ref)
        if is_missing:
            missing.append(ref)
    return SettleResult(SettleStatus.DONE, tuple(crossed), tuple(missing))


class BudgetReservations:
    """Budget reservations over all gateway processes. One instance per process."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        timeout_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.lease_ms = int(lease_s * 1000)
        self.timeout_s = timeout_s
        self.clock = clock
        self._reserve = client.register_script(load_script("budget_reserve.lua"))
        self._settle = client.register_script(load_script("budget_settle.lua"))
        self._period_parts: dict[tuple[Budget, int], _PeriodPart] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def ref(self, budget: Budget, now: datetime | None = None) -> BudgetRef:
        """The budget in the period containing `now` (default: the clock's now)."""
        now = now or self._now()
        return BudgetRef(
            budget.scope, budget.owner_id, budget.period, periods.period_key(budget.period, now)
        )

    def _key_ttl_ms(self, budget: Budget, now: datetime) -> int:
        if budget.period == periods.TOTAL:
            return -1
        _, end = periods.period_bounds(budget.period, now)
        return int((end - now + PERIOD_RETENTION).total_seconds() * 1000)

    def _period_part(self, budget: Budget, now_s: float, now: datetime) -> _PeriodPart:
        """The budget's keys and arguments for the period containing `now`: the same for every
        request of a UTC day (every period is made of whole days), so computed once a day."""
        cache_key = (budget, int(now_s // 86_400))
        part = self._period_parts.get(cache_key)
        if part is None:
            if len(self._period_parts) >= PERIOD_PART_CACHE_SIZE:
                self._period_parts.clear()
            ref = self.ref(budget, now)
            soft = (
                -1
                if budget.soft_limit_pct is None
                else to_micro(budget.limit_usd * budget.soft_limit_pct / 100)
            )
            part = _PeriodPart(
                ref=ref,
                keys=tuple(_budget_key(ref, s) for s in ("spent", "reserved", "leases")),
                # The TTL is taken at the day's first use: later keys of the day live up to a
                # day past the 40 days of retention, never less.
                args=(
                    to_micro(budget.limit_usd, rounding=ROUND_FLOOR),
                    self._key_ttl_ms(budget, now),
                    soft,
                    _budget_key(ref, "soft-alert"),
                    ref.label,
                ),
            )
            self._period_parts[cache_key] = part
        return part

    def prepare_reserve(
        self,
        request_id: str,
        tenant_budget: Budget | None,
        key_budget: Budget | None,
        max_cost: Decimal,
    ) -> ReserveCall | None:
        """The reserve script's keys and arguments (None: no budget applies), for `reserve`
        or a composed script."""
        budgets = [b for b in (tenant_budget, key_budget) if b is not None]
        if not budgets:
            return None
        now_s = self.clock()
        now = datetime.fromtimestamp(now_s, UTC)
        amount = to_micro(max_cost)
        per_budget = [self._period_part(budget, now_s, now) for budget in budgets]
        keys: list[str] = [_record_key(request_id)]
        args: list[Any] = [
            int(now_s * 1000),
            self.lease_ms,
            request_id,
            amount,
            self.lease_ms + RECORD_RETENTION_S * 1000,
            len(budgets),
        ]
        for part in per_budget:
            keys += part.keys
            args += part.args
        refs = tuple(part.ref for part in per_budget)
        return ReserveCall(keys, args, refs)

    async def reserve(
        self,
        request_id: str,
        tenant_budget: Budget | None,
        key_budget: Budget | None,
        max_cost: Decimal,
    ) -> ReservationResult:
        call = self.prepare_reserve(request_id, tenant_budget, key_budget, max_cost)
        if call is None:
            return ReservationResult(ReserveStatus.RESERVED)
        raw = await guarded(self._reserve(keys=call.keys, args=call.args), self.timeout_s)
        return call.result(raw)

    async def settle(self, request_id: str, actual_cost: Decimal) -> SettleResult:
        return await self._finish(prepare_settle(request_id, actual_cost))

    async def release(self, request_id: str) -> SettleResult:
        return await self._finish(prepare_release(request_id))

    async def _finish(self, call: ScriptCall) -> SettleResult:
        raw = await guarded(self._settle(keys=call.keys, args=call.args), self.timeout_s)
        return settle_result(raw)

    async def restore_spent(
        self,
        budget: Budget,
        spent_usd: Decimal,
        *,
        overwrite: bool = False,
        now: datetime | None = None,
    ) -> bool:
        """Set the spent counter (rebuilt from the ledger). Returns whether it was written.

        Without `overwrite` it only creates a missing counter, so a rebuild racing with
        another rebuild or with settles never erases charges.
        """
        now = now or self._now()
        ref = self.ref(budget, now)
        ttl_ms = self._key_ttl_ms(budget, now)
        written = await guarded(
            self.client.set(
                _budget_key(ref, "spent"),
                to_micro(spent_usd),
                nx=not overwrite,
                px=ttl_ms if ttl_ms > 0 else None,
            ),
            self.timeout_s,
        )
        return bool(written)

    async def read_state(self, budget: Budget, now: datetime | None = None) -> BudgetState:
        ref = self.ref(budget, now)
        spent, reserved = await guarded(
            self.client.mget(_budget_key(ref, "spent"), _budget_key(ref, "reserved")),
            self.timeout_s,
        )
        return BudgetState(
            spent_usd=None if spent is None else from_micro(int(spent)),
            reserved_usd=from_micro(int(reserved or 0)),
        )

    async def is_counter_missing(self, budget: Budget, now: datetime | None = None) -> bool:
        return (await self.read_state(budget, now)).spent_usd is None
