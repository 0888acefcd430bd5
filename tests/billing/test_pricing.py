from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import pricing
from billing.models import ModelPrice
from billing.pricing import PriceBook
from tests.billing.conftest import T0


def _price(model: str = "m", **fields: object) -> ModelPrice:
    values: dict[str, object] = {
        "input_usd_per_1m": Decimal("0.15"),
        "output_usd_per_1m": Decimal("0.60"),
        "cached_input_usd_per_1m": Decimal("0.075"),
        "per_request_usd": Decimal("0"),
        "effective_from": T0,
    }
    values.update(fields)
    return ModelPrice(model=model, **values)


def test_price_lookup_uses_the_row_in_force_at_the_given_time() -> None:
    old = _price(effective_from=T0, input_usd_per_1m=Decimal("5"))
    new = _price(effective_from=T0 + timedelta(days=10), input_usd_per_1m=Decimal("2.5"))
    book = PriceBook([new, old])

    assert book.price_at("m", T0 - timedelta(seconds=1)) is None
    assert book.price_at("m", T0) is old
    assert book.price_at("m", T0 + timedelta(days=10) - timedelta(microseconds=1)) is old
    assert book.price_at("m", T0 + timedelta(days=10)) is new
    assert book.price_at("m", T0 + timedelta(days=400)) is new
    assert book.price_at("unknown", T0) is None


@pytest.mark.django_db
def test_price_book_loads_the_seeded_list_prices() -> None:
    book = PriceBook.load()
    gpt_4o = book.price_at("gpt-4o", T0)
    assert gpt_4o is not None
    assert (gpt_4o.input_usd_per_1m, gpt_4o.output_usd_per_1m) == (Decimal("2.5"), Decimal("10"))
    local = book.price_at("llama3-local", T0)
    assert local is not None and local.input_usd_per_1m == 0
    assert {
        "gpt-4o-mini",
        "gpt-4.1",
        "o3-mini",
        "text-embedding-3-small",
        "claude-sonnet-4",
        "claude-3-5-haiku",
    } <= set(book.models())


def test_unknown_model_is_refused_unless_a_fallback_price_is_configured(settings) -> None:
    book = PriceBook([_price("gpt-4o", input_usd_per_1m=Decimal("2.5"))])
    settings.AICC_UNKNOWN_MODEL_PRICE_AS = ""
    assert book.price_for("mystery", T0) is None

    settings.AICC_UNKNOWN_MODEL_PRICE_AS = "gpt-4o"
    fallback = book.price_for("mystery", T0)
    assert fallback is not None and fallback.model == "gpt-4o"


def test_cost_is_exact_in_decimal_with_cached_tokens_at_their_own_rate() -> None:
    price = _price(per_request_usd=Decimal("0.0002"))
    cost = pricing.cost_usd(price, prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    # 800 x 0.15 + 200 x 0.075 + 500 x 0.60 per 1M, plus the per-request fee.
    assert cost == Decimal("0.000635")
    assert isinstance(cost, Decimal)


def test_many_tiny_costs_add_up_exactly() -> None:
    price = _price()
    one_token = pricing.cost_usd(price, prompt_tokens=1, completion_tokens=0)
    assert one_token == Decimal("0.00000015")
    assert sum([one_token] * 3, Decimal(0)) == Decimal("0.00000045")  # a float sum is not


def test_cached_tokens_cost_the_input_rate_when_no_cached_price_is_set() -> None:
    price = _price(cached_input_usd_per_1m=None)
    assert pricing.cost_usd(price, prompt_tokens=1000, completion_tokens=0, cached_tokens=1000) == (
        pricing.cost_usd(price, prompt_tokens=1000, completion_tokens=0)
    )


def test_worst_case_cost_assumes_no_cache_and_every_output_token() -> None:
    price = _price(per_request_usd=Decimal("0.001"))
    assert pricing.max_cost_usd(price, prompt_tokens=2000, max_output_tokens=1000) == Decimal(
        "0.0019"
    )


@pytest.mark.parametrize(
    ("ours", "upstream", "expected"),
    [
        ("100", "99", False),  # exactly 1% of the larger: not more than 1%
        ("100", "98.99", True),
        ("98.99", "100", True),
        ("0", "0", False),
        ("0", "0.000001", True),
        ("0.000435", None, False),
    ],
)
def test_discrepancy_flag_is_set_above_one_percent_of_the_larger_cost(
    ours: str, upstream: str | None, expected: bool
) -> None:
    upstream_usd = None if upstream is None else Decimal(upstream)
    assert pricing.is_cost_discrepant(Decimal(ours), upstream_usd) is expected


def test_upstream_cost_header_becomes_an_exact_decimal() -> None:
    assert pricing.upstream_cost("0.000435") == Decimal("0.000435")
    assert pricing.upstream_cost(0.1) == Decimal("0.1")
    assert pricing.upstream_cost("") is None
    assert pricing.upstream_cost("NaN") is None
