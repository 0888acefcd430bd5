"""Model prices in memory, and the cost arithmetic. Exact Decimal, never float.

`PriceBook.load()` reads every `ModelPrice` row once (a few hundred rows at most); lookups are a
dict access plus a bisect. Reload it when prices change (the consumer loads one per drain).

Unknown models: `price_at` returns None. `price_for` applies the documented rule: if the setting
AICC_UNKNOWN_MODEL_PRICE_AS names a priced model, that model's price is charged; otherwise None,
and the hot path must refuse the request (a budget cannot be enforced on an unpriced model).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from billing import conf
from billing.models import ModelPrice

ONE_MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("1e-12")  # matches models.COST_FIELD
DISCREPANCY_RATIO = Decimal("0.01")


class PriceBook:
    def __init__(self, prices: Iterable[ModelPrice]) -> None:
        by_model: dict[str, list[ModelPrice]] = {}
        for price in prices:
            by_model.setdefault(price.model, []).append(price)
        self._prices = {
            model: sorted(rows, key=lambda row: row.effective_from)
            for model, rows in by_model.items()
        }
        self._starts = {
            model: [row.effective_from for row in rows] for model, rows in self._prices.items()
        }

    @classmethod
    def load(cls) -> PriceBook:
        return cls(ModelPrice.objects.all())

    @classmethod
    async def aload(cls) -> PriceBook:
        return cls([price async for price in ModelPrice.objects.all()])

    def models(self) -> list[str]:
        return sorted(self._prices)

    def price_at(self, model: str, at: datetime) -> ModelPrice | None:
        """The price in force for `model` at `at`: the latest row with effective_from <= at."""
        starts = self._starts.get(model)
        if not starts:
            return None
        index = bisect.bisect_right(starts, at) - 1
        return self._prices[model][index] if index >= 0 else None

    def price_for(self, model: str, at: datetime) -> ModelPrice | None:
        """`price_at`, falling back to the AICC_UNKNOWN_MODEL_PRICE_AS model's price."""
        price = self.price_at(model, at)
        if price is not None:
            return price
        fallback = conf.unknown_model_price_as()
        return self.price_at(fallback, at) if fallback else None


def cost_usd(
    price: ModelPrice,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    requests: int = 1,
) -> Decimal:
    """The exact cost. `prompt_tokens` includes `cached_tokens` (OpenAI's usage convention)."""
    if min(prompt_tokens, completion_tokens, cached_tokens, requests) < 0:
        raise ValueError("token and request counts must be >= 0")
    cached = min(cached_tokens, prompt_tokens)
    cached_rate = (
        price.cached_input_usd_per_1m
        if price.cached_input_usd_per_1m is not None
        else price.input_usd_per_1m
    )
    token_cost = (
        (prompt_tokens - cached) * price.input_usd_per_1m
        + cached * cached_rate
        + completion_tokens * price.output_usd_per_1m
    ) / ONE_MILLION
    return (token_cost + requests * price.per_request_usd).quantize(COST_QUANTUM)


def max_cost_usd(price: ModelPrice, *, prompt_tokens: int, max_output_tokens: int) -> Decimal:
    """The worst case of one request, reserved before forwarding: no cache discount."""
    return cost_usd(price, prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens)


def upstream_cost(raw: str | float | Decimal | None) -> Decimal | None:
    """An upstream-reported cost (LiteLLM's x-litellm-response-cost header) as Decimal."""
    if raw is None or raw == "":
        return None
    # str() first: a float's repr is the shortest string that round-trips, not its binary value.
    value = Decimal(str(raw))
    if not value.is_finite() or value < 0:
        return None
    return value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def is_cost_discrepant(ours: Decimal, upstream: Decimal | None) -> bool:
    """True when the two costs differ by more than 1% of the larger one; 0 vs 0 agrees."""
    if upstream is None:
        return False
    larger = max(abs(ours), abs(upstream))
    if larger == 0:
        return False
    return abs(ours - upstream) > larger * DISCREPANCY_RATIO
