"""Forwarding beside the admission: when a request may go upstream while its admission runs.

When the process is not busy (at most `MAX_IN_FLIGHT` requests in flight) and the key's last
admission here, under `MEMO_S` ago, left every limit and budget at least `FACTOR` times this
request's worth, gateway.views forwards while the admission runs and sends nothing back before
it has said yes (gateway.proxy): the counters are exactly as strict, and a refusal then (other
processes used up that much headroom within the second) costs only the upstream work no tenant
is charged for. A busy process gains nothing from it (its other requests already fill the
wait) and would pay the extra task.

`HeadroomMemo` remembers, per key, what its last admission in this process left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from gateway.budgets import ReservationResult
from gateway.limits import Quota, RateLimitResult

FACTOR = 100
MEMO_S = 1.0
MAX_IN_FLIGHT = 4
MEMO_MAX_KEYS = 10_000


@dataclass(slots=True)
class Headroom:
    """What a key's last admission in this process left; None: no such limit or budget."""

    at: float  # time.monotonic()
    requests: int | None
    tokens: int | None
    concurrent: int | None
    budget_usd: Decimal | None

    def covers(self, tokens_needed: int, max_cost: Callable[[], Decimal | None]) -> bool:
        """At least FACTOR times this request's worth left of everything; `max_cost` (None:
        the model has no price) is asked only when a budget applies."""
        if (
            (self.requests is not None and self.requests < FACTOR)
            or (self.tokens is not None and self.tokens < FACTOR * tokens_needed)
            or (self.concurrent is not None and self.concurrent < FACTOR)
        ):
            return False
        if self.budget_usd is None:
            return True
        cost = max_cost()
        return cost is not None and self.budget_usd >= FACTOR * cost


class HeadroomMemo:
    def __init__(self, *, is_enabled: bool) -> None:
        self.is_enabled = is_enabled
        self._by_key: dict[str, Headroom] = {}

    def usable(self, key_id: str, *, in_flight: int) -> Headroom | None:
        """The key's headroom, if early forwarding may be considered at all right now."""
        if not self.is_enabled or in_flight > MAX_IN_FLIGHT:
            return None
        last = self._by_key.get(key_id)
        if last is None or time.monotonic() - last.at > MEMO_S:
            return None
        return last

    def note(
        self, key_id: str, rate: RateLimitResult | None, reservation: ReservationResult | None
    ) -> None:
        """Remember what an admission left; a refusal or a fail-open answer leaves nothing."""
        if (rate is not None and (rate.is_fail_open or not rate.admitted)) or (
            reservation is not None and not reservation.admitted
        ):
            self.forget_key(key_id)
            return
        if len(self._by_key) >= MEMO_MAX_KEYS:
            self._by_key.clear()
        self._by_key[key_id] = Headroom(
            at=time.monotonic(),
            requests=_remaining(rate.requests) if rate else None,
            tokens=_remaining(rate.tokens) if rate else None,
            concurrent=_remaining(rate.concurrency) if rate else None,
            budget_usd=reservation.headroom_usd if reservation else None,
        )

    def forget_key(self, key_id: str) -> None:
        self._by_key.pop(key_id, None)

    def forget(self) -> None:
        """Limits or budgets may have changed (the credentials version moved)."""
        self._by_key.clear()


def _remaining(quota: Quota | None) -> int | None:
    return None if quota is None else quota.remaining
