"""Rate limits through the management API: per key (tenant admins) and per tenant (operators)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import override_settings
from rest_framework.test import APIClient

from tenants.models import APIKey, AuditEntry, Tenant
from tenants.services import IssuedKey
from tests.tenants.credentials_feed import CredentialsFeed, credentials_feed_fixture  # noqa: F401

MASTER = "master-" + "l" * 40


def _logged_in(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_tenant_admin_sets_and_clears_a_keys_limits_and_gateways_are_told(
    admin_a: AbstractBaseUser,
    key_a: IssuedKey,
    credentials_feed: CredentialsFeed,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    url = f"/api/v1/keys/{key_a.api_key.public_id}/"
    client = _logged_in(admin_a)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(
            url, {"rpm_limit": 30, "tpm_limit": 4000, "max_concurrency": 2}, format="json"
        )
    assert response.status_code == 200, response.json()
    assert (response.json()["rpm_limit"], response.json()["max_concurrency"]) == (30, 2)
    with django_capture_on_commit_callbacks(execute=True):
        client.patch(url, {"tpm_limit": None}, format="json")

    key = APIKey.objects.get(pk=key_a.api_key.pk)
    assert (key.rpm_limit, key.tpm_limit, key.max_concurrency) == (30, None, 2)
    credentials_feed.assert_published({"key_id": key.public_id}, {"key_id": key.public_id})
    assert AuditEntry.objects.filter(action="api_key.update", target_id=key.public_id).count() == 2


@pytest.mark.parametrize("body", [{"rpm_limit": 0}, {"tpm_limit": -5}, {"max_concurrency": "x"}])
def test_key_limits_below_one_are_refused(
    admin_a: AbstractBaseUser, key_a: IssuedKey, redis_client: redis.Redis, body: dict[str, Any]
) -> None:
    response = _logged_in(admin_a).patch(
        f"/api/v1/keys/{key_a.api_key.public_id}/", body, format="json"
    )
    assert response.status_code == 400
    key = APIKey.objects.get(pk=key_a.api_key.pk)
    assert (key.rpm_limit, key.tpm_limit, key.max_concurrency) == (None, None, None)


def test_limits_of_another_tenants_key_cannot_be_changed(
    admin_a: AbstractBaseUser, key_b: IssuedKey, redis_client: redis.Redis
) -> None:
    response = _logged_in(admin_a).patch(
        f"/api/v1/keys/{key_b.api_key.public_id}/", {"rpm_limit": 1}, format="json"
    )
    assert response.status_code == 404
    assert APIKey.objects.get(pk=key_b.api_key.pk).rpm_limit is None


def test_viewer_cannot_change_key_limits(
    viewer_a: AbstractBaseUser, key_a: IssuedKey, redis_client: redis.Redis
) -> None:
    response = _logged_in(viewer_a).patch(
        f"/api/v1/keys/{key_a.api_key.public_id}/", {"rpm_limit": 1}, format="json"
    )
    assert response.status_code == 403
    assert APIKey.objects.get(pk=key_a.api_key.pk).rpm_limit is None


def test_superuser_sets_tenant_limits_and_gateways_drop_the_whole_tenant(
    superuser: AbstractBaseUser,
    tenant_a: Tenant,
    credentials_feed: CredentialsFeed,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    url = f"/api/v1/tenants/{tenant_a.pk}/"
    client = _logged_in(superuser)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(
            url, {"rpm_limit": 600, "tpm_limit": 100000, "max_concurrency": 16}, format="json"
        )
    assert response.status_code == 200, response.json()
    with django_capture_on_commit_callbacks(execute=True):
        client.patch(url, {"rpm_limit": None}, format="json")

    tenant = Tenant.objects.get(pk=tenant_a.pk)
    assert (tenant.rpm_limit, tenant.tpm_limit, tenant.max_concurrency) == (None, 100000, 16)
    credentials_feed.assert_published({"tenant_id": tenant_a.pk}, {"tenant_id": tenant_a.pk})


@override_settings(AICC_MASTER_KEYS=[MASTER])
def test_master_key_sets_tenant_limits(tenant_b: Tenant, redis_client: redis.Redis) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")

    response = client.patch(f"/api/v1/tenants/{tenant_b.pk}/", {"tpm_limit": 50}, format="json")

    assert response.status_code == 200
    assert Tenant.objects.get(pk=tenant_b.pk).tpm_limit == 50


def test_tenant_admins_cannot_raise_their_own_tenants_limits(
    admin_a: AbstractBaseUser, tenant_a: Tenant, redis_client: redis.Redis
) -> None:
    response = _logged_in(admin_a).patch(
        f"/api/v1/tenants/{tenant_a.pk}/", {"rpm_limit": 1_000_000}, format="json"
    )
    assert response.status_code == 403
    assert Tenant.objects.get(pk=tenant_a.pk).rpm_limit is None
