"""Rate limits in the Django admin: key limits by tenant admins, tenant limits by superusers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from tenants.models import APIKey, Tenant
from tenants.services import IssuedKey

LIMIT_INPUTS = ('name="rpm_limit"', 'name="tpm_limit"', 'name="max_concurrency"')


def _signed_in(user: AbstractBaseUser) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_a(admin_a: AbstractBaseUser) -> Client:
    return _signed_in(admin_a)


def test_key_forms_expose_the_limits_to_tenant_admins(
    admin_client_a: Client, key_a: IssuedKey
) -> None:
    for url in ("/admin/tenants/apikey/add/", f"/admin/tenants/apikey/{key_a.api_key.pk}/change/"):
        page = admin_client_a.get(url).content.decode()
        assert all(field in page for field in LIMIT_INPUTS), url


def test_tenant_admin_sets_key_limits_and_gateways_are_told(
    admin_client_a: Client,
    key_a: IssuedKey,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    api_key = key_a.api_key
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client_a.post(
            f"/admin/tenants/apikey/{api_key.pk}/change/",
            {"name": api_key.name, "allowed_models": "", "rpm_limit": "30", "tpm_limit": "",
             "max_concurrency": "2", "expires_at_0": "", "expires_at_1": "",
             "secrets-TOTAL_FORMS": "1", "secrets-INITIAL_FORMS": "1",
             "secrets-MIN_NUM_FORMS": "0", "secrets-MAX_NUM_FORMS": "1000"},
        )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:3000]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.rpm_limit, stored.tpm_limit, stored.max_concurrency) == (30, None, 2)
    assert len(callbacks) == 1  # api_key_update's credentials_changed


def test_tenant_form_exposes_the_limits_to_superusers_and_saves_them(
    superuser: AbstractBaseUser,
    tenant_a: Tenant,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    client = _signed_in(superuser)
    url = f"/admin/tenants/tenant/{tenant_a.pk}/change/"
    page = client.get(url).content.decode()
    assert all(field in page for field in LIMIT_INPUTS)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            url,
            {"name": "Tenant A", "allowed_models": "", "rpm_limit": "600", "tpm_limit": "90000",
             "max_concurrency": ""},
        )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:3000]
    stored = Tenant.objects.get(pk=tenant_a.pk)
    assert (stored.rpm_limit, stored.tpm_limit, stored.max_concurrency) == (600, 90000, None)
    assert len(callbacks) == 1  # tenant_update's credentials_changed
