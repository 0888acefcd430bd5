"""Billing fixtures: named tenants and keys, prices, and a factory of usage events."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing.events import UsageEvent
from billing.models import ModelPrice
from tenants.models import APIKey, Tenant
from tenants.services import api_key_create, tenant_create

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
_counter = itertools.count(1)


@pytest.fixture
def tenant_a(db: None) -> Tenant:
    return tenant_create(slug="tenant-a", name="Tenant A")


@pytest.fixture
def tenant_b(db: None) -> Tenant:
    """The outsider: its usage must never show up in tenant A's reports."""
    return tenant_create(slug="tenant-b", name="Tenant B")


@pytest.fixture
def key_a(tenant_a: Tenant) -> APIKey:
    return api_key_create(tenant=tenant_a, name="key A").api_key


@pytest.fixture
def key_a2(tenant_a: Tenant) -> APIKey:
    return api_key_create(tenant=tenant_a, name="key A2").api_key


@pytest.fixture
def key_b(tenant_b: Tenant) -> APIKey:
    return api_key_create(tenant=tenant_b, name="key B").api_key


@pytest.fixture
def test_prices(db: None) -> list[ModelPrice]:
    """Prices of two fictitious models, so tests do not depend on the seeded list prices."""
    return [
        ModelPrice.objects.create(
            model="test-small",
            input_usd_per_1m=Decimal("0.15"),
            output_usd_per_1m=Decimal("0.60"),
            cached_input_usd_per_1m=Decimal("0.075"),
            effective_from=T0 - timedelta(days=30),
        ),
        ModelPrice.objects.create(
            model="test-large",
            input_usd_per_1m=Decimal("3"),
            output_usd_per_1m=Decimal("15"),
            per_request_usd=Decimal("0.0001"),
            effective_from=T0 - timedelta(days=30),
        ),
    ]


MakeEvent = Callable[..., UsageEvent]


@pytest.fixture
def make_event() -> MakeEvent:
    def make(**overrides: Any) -> UsageEvent:
        number = next(_counter)
        started_at = overrides.pop("started_at", T0 + timedelta(seconds=number))
        values: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "tenant_id": 1,
            "api_key_id": 1,
            "secret_id": 1,
            "requested_model": "test-small",
            "served_model": "test-small",
            "route_reason": "requested",
            "endpoint": "chat.completions",
            "prompt_tokens": 100 + number,
            "completion_tokens": 20 + number,
            "cached_tokens": 0,
            "cost_usd": None,
            "latency_ms": 200 + number,
            "ttfb_ms": 50,
            "status_code": 200,
            "correlation_id": f"corr-{number}",
            "started_at": started_at,
            "finished_at": started_at + timedelta(milliseconds=200 + number),
        }
        values.update(overrides)
        return UsageEvent(**values)

    return make
