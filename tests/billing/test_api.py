from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.test import APIClient

from billing.models import UsageRecord
from tenants.models import APIKey, Membership, Tenant
from tests.billing.conftest import T0

pytestmark = pytest.mark.django_db
URL = "/api/v1/usage"
DAY_1 = T0.date().isoformat()
DAY_2 = (T0 + timedelta(days=1)).date().isoformat()


def _usage(
    tenant: Tenant, key: APIKey, model: str, cost: str, at: datetime, **fields: object
) -> None:
    UsageRecord.objects.create(
        event_id=uuid.uuid4().hex,
        tenant_id=tenant.pk,
        api_key_id=key.pk,
        requested_model=model,
        served_model=model,
        endpoint="chat.completions",
        prompt_tokens=100,
        completion_tokens=10,
        cost_usd=Decimal(cost),
        latency_ms=100,
        status_code=fields.pop("status_code", 200),
        started_at=at,
        finished_at=at,
        **fields,
    )


@pytest.fixture
def member_a(tenant_a: Tenant) -> AbstractBaseUser:
    user = get_user_model().objects.create_user(username="alice", password=None)
    Membership.objects.create(user=user, tenant=tenant_a, role=Membership.Role.VIEWER)
    return user


@pytest.fixture
def traffic(key_a: APIKey, key_a2: APIKey, key_b: APIKey) -> None:
    tenant_a, tenant_b = key_a.tenant, key_b.tenant
    _usage(tenant_a, key_a, "small", "0.000000000001", T0)
    _usage(tenant_a, key_a, "small", "0.1", T0 + timedelta(hours=1), status_code=429)
    _usage(tenant_a, key_a2, "large", "0.2", T0 + timedelta(days=1))
    _usage(tenant_a, key_a, "small", "5", T0 + timedelta(days=3))  # outside the range
    # The outsider's traffic: same models, same days, much bigger numbers.
    _usage(tenant_b, key_b, "small", "777.7", T0)
    _usage(tenant_b, key_b, "secret-model", "888.8", T0 + timedelta(days=1))


def _client(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def test_member_gets_usage_of_their_tenant_grouped_by_day_and_model(
    member_a: AbstractBaseUser, traffic: None
) -> None:
    response = _client(member_a).get(URL, {"start": DAY_1, "end": DAY_2, "group_by": "day,model"})

    assert response.status_code == 200
    body = response.json()
    assert body["columns"][:2] == ["day", "model"]
    assert [
        (row["day"], row["model"], row["requests"], row["errors"], row["cost_usd"])
        for row in body["rows"]
    ] == [
        (DAY_1, "small", 2, 1, "0.100000000001"),
        (DAY_2, "large", 1, 0, "0.200000000000"),
    ]


def test_outsider_usage_never_appears_in_a_tenants_report(
    member_a: AbstractBaseUser, traffic: None
) -> None:
    for group_by in ("", "day", "model", "key", "day,model,key"):
        response = _client(member_a).get(URL, {"start": DAY_1, "end": DAY_2, "group_by": group_by})
        assert response.status_code == 200
        text = response.content.decode()
        assert "secret-model" not in text
        assert "777" not in text and "888" not in text
    total = _client(member_a).get(URL, {"start": DAY_1, "end": DAY_2}).json()["rows"]
    assert [(row["requests"], row["cost_usd"]) for row in total] == [(3, "0.300000000001")]


def test_grouping_by_key_shows_public_key_ids(
    member_a: AbstractBaseUser, traffic: None, key_a: APIKey, key_a2: APIKey
) -> None:
    rows = (
        _client(member_a).get(URL, {"start": DAY_1, "end": DAY_2, "group_by": "key"}).json()["rows"]
    )
    assert {row["key"]: row["requests"] for row in rows} == {
        key_a.public_id: 2,
        key_a2.public_id: 1,
    }


def test_usage_is_available_as_csv(member_a: AbstractBaseUser, traffic: None) -> None:
    response = _client(member_a).get(
        URL, {"start": DAY_1, "end": DAY_2, "group_by": ["model", "day"], "format": "csv"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "model",
        "day",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
    ]
    assert rows[1:] == [
        ["large", DAY_2, "1", "0", "100", "10", "0", "0.200000000000"],
        ["small", DAY_1, "2", "1", "200", "20", "0", "0.100000000001"],
    ]


def test_a_member_of_several_tenants_must_name_one(
    member_a: AbstractBaseUser, tenant_b: Tenant, traffic: None
) -> None:
    Membership.objects.create(user=member_a, tenant=tenant_b)
    client = _client(member_a)
    assert client.get(URL, {"start": DAY_1, "end": DAY_2}).status_code == 400
    response = client.get(URL, {"start": DAY_1, "end": DAY_2, "tenant": "tenant-b"})
    assert response.json()["rows"][0]["cost_usd"] == "1666.500000000000"
    assert client.get(URL, {"start": DAY_1, "end": DAY_2, "tenant": "nope"}).status_code == 404


def test_a_user_without_membership_gets_nothing(tenant_a: Tenant, traffic: None) -> None:
    outsider = get_user_model().objects.create_user(username="mallory", password=None)
    assert _client(outsider).get(URL, {"start": DAY_1, "end": DAY_2}).status_code == 403
    assert (
        _client(outsider).get(URL, {"start": DAY_1, "end": DAY_2, "tenant": "tenant-a"}).status_code
        == 404
    )
    assert APIClient().get(URL, {"start": DAY_1, "end": DAY_2}).status_code in (401, 403)


@pytest.mark.parametrize(
    "params",
    [
        {"start": DAY_2, "end": DAY_1},
        {"start": "yesterday", "end": DAY_1},
        {"end": DAY_1},
        {"start": DAY_1, "end": DAY_2, "group_by": "tenant"},
        {"start": "2020-01-01", "end": "2026-01-01"},
    ],
)
def test_invalid_queries_are_refused(member_a: AbstractBaseUser, params: dict[str, str]) -> None:
    assert _client(member_a).get(URL, params).status_code == 400
