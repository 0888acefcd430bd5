"""Billing settings, each read when used: Django settings first, then the environment, then
the default.

settings.py does not (yet) define these names; reading the environment as a fallback lets a
worker process started by the tests get its knobs (batch size, the test-only batch delay)
without a settings change. Invalid values raise ImproperlyConfigured naming the setting.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _raw(name: str) -> object:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    return value


def _number(name: str, default: float, *, minimum: float, kind: type) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    return number


def usage_retention_days() -> int:
    return int(_number("AICC_USAGE_RETENTION_DAYS", 90, minimum=1, kind=int))


def usage_batch_size() -> int:
    return int(_number("AICC_USAGE_BATCH_SIZE", 500, minimum=1, kind=int))


def usage_claim_idle_ms() -> int:
    # A worker that has not acked an entry for this long is presumed dead. Must exceed the time
    # one batch takes to insert, or a live worker's entries get re-processed (harmless thanks to
    # the unique event_id, but wasted work).
    return int(_number("AICC_USAGE_CLAIM_IDLE_MS", 60_000, minimum=1, kind=int))


def usage_drain_budget_s() -> float:
    return float(_number("AICC_USAGE_DRAIN_BUDGET_S", 1.5, minimum=0.0, kind=float))


def usage_batch_delay_s() -> float:
    """Test-only: a pause inside the insert transaction, so a test can kill a worker mid-batch."""
    return float(_number("AICC_USAGE_BATCH_DELAY_S", 0.0, minimum=0.0, kind=float))


def unknown_model_price_as() -> str:
    """The model whose price applies to a model with no price row; "" means refuse."""
    value = _raw("AICC_UNKNOWN_MODEL_PRICE_AS")
    return str(value).strip() if value else ""


def budget_webhook_timeout_s() -> float:
    return float(_number("AICC_BUDGET_WEBHOOK_TIMEOUT_S", 5.0, minimum=0.1, kind=float))
