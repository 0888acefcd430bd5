"""One Redis round trip per metering phase.

Admission (budget reservation + rate limits) and settlement (token correction, concurrency
slot, budget charge, usage event) each run as ONE script composed from the limiter's and the
budgets' own scripts (gateway.lua.compose_script), so the hot path pays two round trips per
request instead of five, and each phase is atomic: a rate refusal leaves no reservation
behind, and no other request can slip between the parts. Calls made by concurrent requests in
the same turn of the event loop share one pipelined round trip (gateway.script_batch).

The parts' keys and arguments come from `RateLimiter.prepare_*` and
`BudgetReservations.prepare_*`, and their replies are read by the same code as when each
script runs alone, so the composed scripts cannot drift from the parts' contracts.
"""

from __future__ import annotations

from typing import Any, Protocol

from redis.asyncio import Redis

from billing.events import FIELD, STREAM
from gateway.limits import guarded
from gateway.lua import compose_script
from gateway.script_batch import ScriptBatcher

__all__ = ["MeterScripts"]


class Call(Protocol):
    """A part's script call: AdmitCall, EndCall, ReserveCall, ScriptCall."""

    @property
    def keys(self) -> list[str]: ...

    @property
    def args(self) -> list[Any]: ...


def _layout(first: Call | None, second: Call | None) -> tuple[list[str], list[Any]]:
    first_keys, first_args = (first.keys, first.args) if first is not None else ([], [])
    second_keys, second_args = (second.keys, second.args) if second is not None else ([], [])
    counts = [len(first_keys), len(first_args), len(second_keys), len(second_args)]
    return [*first_keys, *second_keys], [*counts, *first_args, *second_args]


class MeterScripts:
    def __init__(self, client: Redis, *, timeout_s: float) -> None:
        # Calls of concurrent requests share round trips, each batch under one deadline
        # (gateway.script_batch).
        self._batcher = ScriptBatcher(client.connection_pool, timeout_s=timeout_s)
        self._admit = client.register_script(
            compose_script(
                "meter_admit.lua",
                "rate_admit.lua",
                "budget_reserve.lua",
                "budget_settle.lua",
                prelude="meter_layout.lua",
            )
        )
        self._settle = client.register_script(
            compose_script(
                "meter_settle.lua",
                "rate_finish.lua",
                "budget_settle.lua",
                prelude="meter_layout.lua",
            )
        )

    async def admit(
        self, rate: Call | None, budget: Call | None
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Run the reservation, then the rate check; returns (rate reply, budget reply), None
        for a part that did not run. Redis failures raise gateway.limits.LimiterUnavailable."""
        keys, args = _layout(rate, budget)
        budget_reply, rate_reply = await guarded(self._batcher.run(self._admit, keys, args))
        return (rate_reply or None), (budget_reply or None)

    async def settle(
        self, rate: Call | None, budget: Call | None, event: bytes
    ) -> list[Any] | None:
        """Settle both parts and append the event; returns the budget reply (None: no budget)."""
        keys, args = _layout(rate, budget)
        keys.append(STREAM)
        args += [FIELD, event]
        _freed, budget_reply = await guarded(self._batcher.run(self._settle, keys, args))
        return budget_reply or None
