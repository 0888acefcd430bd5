"""Budgets in the Django admin: tenant A's admin sees and changes only tenant A's budgets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from billing import services
from billing.admin import BudgetAdmin
from billing.models import Budget, UsageRecord
from tenants.models import APIKey, Membership, Tenant
from tenants.services import membership_add
from tests.billing.conftest import T0

BUDGETS = "/admin/billing/budget/"


def _staff(username: str, tenant: Tenant | None = None, role: str = "") -> Client:
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    if tenant is not None:
        membership_add(tenant=tenant, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_a(tenant_a: Tenant) -> Client:
    """Tenant A's admin member, signed in to the Django admin."""
    return _staff("alice-admin-a", tenant_a, Membership.Role.ADMIN)


@pytest.fixture
def budget_a(key_a: APIKey) -> Budget:
    return services.budget_set(
        tenant_id=key_a.tenant_id, api_key_id=key_a.pk, limit_usd=Decimal("10"), period="daily"
    )


@pytest.fixture
def budget_b(tenant_b: Tenant) -> Budget:
    """The outsider's tenant-wide budget."""
    return services.budget_set(
        tenant_id=tenant_b.pk, api_key_id=None, limit_usd=Decimal("999"), period="monthly"
    )


def _form(tenant: Tenant, api_key: APIKey | None = None, **fields: str) -> dict[str, Any]:
    return {
        "tenant": tenant.pk,
        "api_key": api_key.pk if api_key else "",
        "limit_usd": "50",
        "period": "weekly",
        "soft_limit_pct": "75",
        "alert_webhook_url": "",
        **fields,
    }


def _change_url(budget: Budget) -> str:
    return f"{BUDGETS}{budget.pk}/change/"


def test_changelist_shows_only_tenant_a_budgets(
    admin_a: Client, budget_a: Budget, budget_b: Budget
) -> None:
    page = admin_a.get(BUDGETS).content.decode()

    assert _change_url(budget_a) in page
    assert _change_url(budget_b) not in page and "tenant-b" not in page


def test_tenant_b_budget_urls_are_not_found_and_it_cannot_be_deleted(
    admin_a: Client, budget_b: Budget
) -> None:
    for url in (_change_url(budget_b), f"{BUDGETS}{budget_b.pk}/delete/"):
        response = admin_a.get(url)
        assert response.status_code == 302 and response.url == "/admin/", url
    admin_a.post(f"{BUDGETS}{budget_b.pk}/delete/", {"post": "yes"})
    admin_a.post(f"{BUDGETS}{budget_b.pk}/change/", _form(budget_b.tenant, limit_usd="0"))
    assert Budget.objects.get(pk=budget_b.pk).limit_usd == Decimal("999")


def test_tenant_and_key_choices_are_scoped_and_forged_ids_are_refused(
    admin_a: Client, tenant_a: Tenant, tenant_b: Tenant, key_b: APIKey
) -> None:
    page = admin_a.get(f"{BUDGETS}add/").content.decode()
    assert "tenant-a" in page and "tenant-b" not in page

    forged_tenant = admin_a.post(f"{BUDGETS}add/", _form(tenant_b))
    forged_key = admin_a.post(f"{BUDGETS}add/", _form(tenant_a, key_b))

    for response in (forged_tenant, forged_key):
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Budget.objects.exists()


def test_a_key_of_another_tenant_is_refused_even_for_superusers(
    tenant_a: Tenant, key_b: APIKey
) -> None:
    root = Client()
    root.force_login(get_user_model().objects.create_superuser(username="root", password=None))

    response = root.post(f"{BUDGETS}add/", _form(tenant_a, key_b))

    assert response.status_code == 200
    assert "belongs to another tenant" in response.content.decode()
    assert not Budget.objects.exists()


def test_admin_creates_changes_and_deletes_a_budget_and_gateways_are_told_each_time(
    admin_a: Client,
    tenant_a: Tenant,
    key_a: APIKey,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as created:
        response = admin_a.post(f"{BUDGETS}add/", _form(tenant_a, key_a))
    assert response.status_code == 302, response.content.decode()
    budget = Budget.objects.get()
    assert (budget.tenant_id, budget.api_key_id, budget.limit_usd, budget.period) == (
        tenant_a.pk,
        key_a.pk,
        Decimal("50"),
        "weekly",
    )

    with django_capture_on_commit_callbacks(execute=False) as changed:
        admin_a.post(_change_url(budget), _form(tenant_a, key_a, limit_usd="60.5"))
    assert Budget.objects.get(pk=budget.pk).limit_usd == Decimal("60.5")
    assert Budget.objects.get(pk=budget.pk).soft_limit_pct == 75

    with django_capture_on_commit_callbacks(execute=False) as deleted:
        admin_a.post(f"{BUDGETS}{budget.pk}/delete/", {"post": "yes"})
    assert not Budget.objects.exists()
    # One credentials_changed per write (budget_set / budget_delete register it on commit).
    assert (len(created), len(changed), len(deleted)) == (1, 1, 1)


def test_a_second_tenant_wide_budget_is_a_form_error(admin_a: Client, tenant_a: Tenant) -> None:
    assert admin_a.post(f"{BUDGETS}add/", _form(tenant_a)).status_code == 302
    response = admin_a.post(f"{BUDGETS}add/", _form(tenant_a, limit_usd="1"))

    assert response.status_code == 200
    assert Budget.objects.get().limit_usd == Decimal("50")


def test_change_form_shows_the_spend_of_the_current_period(
    admin_a: Client, budget_a: Budget, key_a: APIKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BudgetAdmin, "clock", staticmethod(lambda: T0))
    for cost, at in (("1.25", T0), ("0.000000000002", T0), ("40", T0 - timedelta(days=1))):
        UsageRecord.objects.create(
            event_id=uuid.uuid4().hex, tenant_id=key_a.tenant_id, api_key_id=key_a.pk,
            requested_model="m", served_model="m", endpoint="chat.completions",
            cost_usd=Decimal(cost), latency_ms=1, status_code=200, started_at=at, finished_at=at,
        )  # fmt: skip

    page = admin_a.get(_change_url(budget_a)).content.decode()

    assert "Spent this period (USD)" in page
    assert "1.250000000002 (from 2026-03-02 00:00 UTC)" in page  # the daily period of T0


def test_staff_viewer_and_staff_without_membership_see_no_budgets(
    tenant_a: Tenant, budget_a: Budget
) -> None:
    viewer = _staff("victor-viewer-a", tenant_a, Membership.Role.VIEWER)
    stranger = _staff("sam-stranger")
    assert viewer.get(BUDGETS).status_code == 403
    assert stranger.get(BUDGETS).status_code == 403


def test_superuser_sees_every_tenants_budgets(
    superuser_client: Client, budget_a: Budget, budget_b: Budget
) -> None:
    page = superuser_client.get(BUDGETS).content.decode()
    assert _change_url(budget_a) in page and _change_url(budget_b) in page


@pytest.fixture
def superuser_client(db: None) -> Client:
    client = Client()
    user: AbstractBaseUser = get_user_model().objects.create_superuser(
        username="root", password=None
    )
    client.force_login(user)
    return client
