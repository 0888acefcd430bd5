"""Budgets in the management API: tenant A's admin and viewer against outsider tenant B."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import override_settings
from rest_framework.test import APIClient

from billing import services
from billing.api import BudgetViewSet
from billing.models import Budget, UsageRecord
from tenants.models import APIKey, Membership, Tenant
from tenants.services import api_key_create, membership_add
from tests.billing.conftest import T0
from tests.tenants.credentials_feed import CredentialsFeed, credentials_feed_fixture  # noqa: F401

URL = "/api/v1/budgets/"
MASTER = "master-" + "m" * 40
NOW = T0 + timedelta(days=2)  # Wednesday 2026-03-04: the week began on T0, the month on 03-01


@pytest.fixture(autouse=True)
def _fresh_redis_and_fixed_clock(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rate-limit counters live in Redis (emptied by redis_client); the period is that of NOW."""
    monkeypatch.setattr(BudgetViewSet, "clock", staticmethod(lambda: NOW))


def _member(tenant: Tenant, username: str, role: str) -> AbstractBaseUser:
    user = get_user_model().objects.create_user(username=username, password=None)
    membership_add(tenant=tenant, user=user, role=role)
    return user


def _logged_in(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def admin_a(tenant_a: Tenant) -> APIClient:
    return _logged_in(_member(tenant_a, "alice-admin-a", Membership.Role.ADMIN))


@pytest.fixture
def viewer_a(tenant_a: Tenant) -> APIClient:
    return _logged_in(_member(tenant_a, "victor-viewer-a", Membership.Role.VIEWER))


@pytest.fixture
def budget_b(key_b: APIKey) -> Budget:
    """The outsider's budget, on its key."""
    return services.budget_set(
        tenant_id=key_b.tenant_id, api_key_id=key_b.pk, limit_usd=Decimal("999"), period="daily"
    )


@pytest.fixture
def budget_a(tenant_a: Tenant) -> Budget:
    return services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("100"), period="monthly"
    )


def _spend(key: APIKey, cost: str, at: datetime) -> None:
    UsageRecord.objects.create(
        event_id=uuid.uuid4().hex,
        tenant_id=key.tenant_id,
        api_key_id=key.pk,
        requested_model="m",
        served_model="m",
        endpoint="chat.completions",
        cost_usd=Decimal(cost),
        latency_ms=10,
        status_code=200,
        started_at=at,
        finished_at=at,
    )


def test_admin_creates_a_key_budget_and_sees_the_current_periods_spend(
    admin_a: APIClient, key_a: APIKey, key_a2: APIKey
) -> None:
    _spend(key_a, "0.100000000001", NOW - timedelta(days=1))  # this week
    _spend(key_a, "0.2", T0 - timedelta(hours=11))  # Sunday: last week
    _spend(key_a2, "7", NOW)  # another key of the same tenant

    response = admin_a.post(
        URL,
        {"api_key": key_a.public_id, "limit_usd": "12.5", "period": "weekly", "soft_limit_pct": 90},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["api_key"] == key_a.public_id
    assert Decimal(body["limit_usd"]) == Decimal("12.5")
    assert (body["period"], body["soft_limit_pct"]) == ("weekly", 90)
    assert Decimal(body["spent_usd"]) == Decimal("0.100000000001")
    assert body["period_start"].startswith("2026-03-02T00:00:00")
    assert body["period_end"].startswith("2026-03-09T00:00:00")
    stored = Budget.objects.get(pk=body["id"])
    assert (stored.tenant_id, stored.api_key_id) == (key_a.tenant_id, key_a.pk)


def test_tenant_wide_budget_counts_every_key_of_the_tenant_only(
    admin_a: APIClient, key_a: APIKey, key_a2: APIKey, key_b: APIKey
) -> None:
    _spend(key_a, "1.5", NOW)
    _spend(key_a2, "2.25", NOW)
    _spend(key_b, "500", NOW)  # the outsider's spend

    response = admin_a.post(URL, {"limit_usd": "100"}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["api_key"] is None
    assert response.json()["period"] == "monthly"
    assert Decimal(response.json()["spent_usd"]) == Decimal("3.75")


def test_list_shows_only_the_callers_tenant_budgets(
    admin_a: APIClient, budget_a: Budget, budget_b: Budget
) -> None:
    response = admin_a.get(URL)

    assert response.status_code == 200
    assert [budget["id"] for budget in response.json()["results"]] == [budget_a.pk]


@pytest.mark.parametrize(
    ("method", "body"), [("get", None), ("patch", {"limit_usd": "0"}), ("delete", None)]
)
def test_another_tenants_budget_is_not_found_and_stays_unchanged(
    admin_a: APIClient, budget_b: Budget, method: str, body: dict[str, str] | None
) -> None:
    response = getattr(admin_a, method)(f"{URL}{budget_b.pk}/", body, format="json")

    assert response.status_code == 404
    stored = Budget.objects.get(pk=budget_b.pk)
    assert (stored.limit_usd, stored.period) == (Decimal("999"), "daily")


def test_another_tenants_key_in_a_post_is_refused_like_a_missing_one(
    admin_a: APIClient, key_b: APIKey
) -> None:
    foreign = admin_a.post(URL, {"api_key": key_b.public_id, "limit_usd": "1"}, format="json")
    missing = admin_a.post(URL, {"api_key": "zzzzzzzzzzzz", "limit_usd": "1"}, format="json")

    assert foreign.status_code == missing.status_code == 400
    assert foreign.json() == missing.json()
    assert not Budget.objects.exists()


def test_tenant_ids_in_the_body_are_ignored(
    admin_a: APIClient, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    response = admin_a.post(
        URL, {"limit_usd": "5", "tenant": tenant_b.pk, "tenant_id": tenant_b.pk}, format="json"
    )

    assert response.status_code == 201
    assert Budget.objects.get().tenant_id == tenant_a.pk


def test_a_second_budget_for_the_same_scope_is_refused(
    admin_a: APIClient, budget_a: Budget
) -> None:
    response = admin_a.post(URL, {"limit_usd": "1"}, format="json")

    assert response.status_code == 400
    assert Budget.objects.get().limit_usd == Decimal("100")


def test_patch_changes_only_the_given_fields(admin_a: APIClient, budget_a: Budget) -> None:
    response = admin_a.patch(
        f"{URL}{budget_a.pk}/",
        {"limit_usd": "250.75", "alert_webhook_url": "https://hooks.example.com/x"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    stored = Budget.objects.get(pk=budget_a.pk)
    assert stored.limit_usd == Decimal("250.75")
    assert stored.alert_webhook_url == "https://hooks.example.com/x"
    assert (stored.period, stored.soft_limit_pct, stored.api_key_id) == ("monthly", 80, None)


@pytest.mark.parametrize(
    "body",
    [{"limit_usd": "-1"}, {"soft_limit_pct": 0}, {"soft_limit_pct": 101}, {"period": "yearly"}],
)
def test_invalid_values_are_400s_and_change_nothing(
    admin_a: APIClient, budget_a: Budget, body: dict[str, Any]
) -> None:
    response = admin_a.patch(f"{URL}{budget_a.pk}/", body, format="json")

    assert response.status_code == 400
    stored = Budget.objects.get(pk=budget_a.pk)
    assert (stored.limit_usd, stored.soft_limit_pct, stored.period) == (
        Decimal("100"),
        80,
        "monthly",
    )


def test_delete_removes_the_budget(admin_a: APIClient, budget_a: Budget) -> None:
    assert admin_a.delete(f"{URL}{budget_a.pk}/").status_code == 204
    assert not Budget.objects.filter(pk=budget_a.pk).exists()
    assert admin_a.get(f"{URL}{budget_a.pk}/").status_code == 404


def test_viewer_reads_budgets_but_cannot_write(
    viewer_a: APIClient, budget_a: Budget, key_a: APIKey
) -> None:
    assert viewer_a.get(URL).status_code == 200
    assert viewer_a.get(f"{URL}{budget_a.pk}/").status_code == 200
    assert viewer_a.post(URL, {"api_key": key_a.public_id, "limit_usd": "1"}).status_code == 403
    assert viewer_a.patch(f"{URL}{budget_a.pk}/", {"limit_usd": "1"}).status_code == 403
    assert viewer_a.delete(f"{URL}{budget_a.pk}/").status_code == 403
    assert list(Budget.objects.values_list("limit_usd", flat=True)) == [Decimal("100")]


@override_settings(AICC_MASTER_KEYS=[MASTER])
def test_master_key_names_the_tenant_with_the_header(
    budget_a: Budget, budget_b: Budget, tenant_b: Tenant
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")

    assert client.get(URL).status_code == 400  # which tenant?
    listed = client.get(URL, HTTP_X_AICC_TENANT="tenant-b").json()["results"]
    assert [budget["id"] for budget in listed] == [budget_b.pk]
    created = client.post(URL, {"limit_usd": "3"}, format="json", HTTP_X_AICC_TENANT="tenant-b")
    assert created.status_code == 201
    assert Budget.objects.get(pk=created.json()["id"]).tenant_id == tenant_b.pk


def test_tenant_admin_key_manages_its_own_tenants_budgets_only(
    tenant_a: Tenant, budget_b: Budget
) -> None:
    issued = api_key_create(tenant=tenant_a, name="automation", is_admin=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")

    assert client.post(URL, {"limit_usd": "10"}, format="json").status_code == 201
    assert client.get(URL, HTTP_X_AICC_TENANT="tenant-b").status_code == 404
    assert client.delete(f"{URL}{budget_b.pk}/").status_code == 404
    assert Budget.objects.filter(pk=budget_b.pk).exists()


def test_every_budget_change_through_the_api_publishes_credentials_changed(
    admin_a: APIClient,
    tenant_a: Tenant,
    key_a: APIKey,
    credentials_feed: CredentialsFeed,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        created = admin_a.post(URL, {"api_key": key_a.public_id, "limit_usd": "1"}, format="json")
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})
    with django_capture_on_commit_callbacks(execute=True):
        admin_a.patch(f"{URL}{created.json()['id']}/", {"limit_usd": "2"}, format="json")
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})
    with django_capture_on_commit_callbacks(execute=True):
        admin_a.delete(f"{URL}{created.json()['id']}/")
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})


def test_deleting_a_missing_budget_publishes_nothing(
    tenant_a: Tenant, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert services.budget_delete(tenant_id=tenant_a.pk, budget_id=12345) is False
    assert callbacks == []
