"""Django admin: tenant A's admin sees and changes only tenant A; secrets are shown once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants import keys, services
from tenants.models import APIKey, APIKeySecret, AuditEntry, Membership, Tenant
from tenants.services import IssuedKey

KEYS = "/admin/tenants/apikey/"


@pytest.fixture
def admin_client_a(admin_a: AbstractBaseUser) -> Client:
    client = Client()
    client.force_login(admin_a)
    return client


def _content(response: Any) -> str:
    return response.content.decode()


def test_key_list_shows_only_tenant_a_keys_with_hints_not_digests(
    admin_client_a: Client, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    page = _content(admin_client_a.get(KEYS))
    assert key_a.api_key.public_id in page
    assert keys.display_hint(key_a.raw_key) in page
    assert key_b.api_key.public_id not in page
    assert keys.digest(key_a.raw_key) not in page and key_a.raw_key not in page


def test_direct_urls_to_tenant_b_objects_are_not_found(
    admin_client_a: Client, key_b: IssuedKey, admin_b: AbstractBaseUser, tenant_b: Tenant
) -> None:
    membership_b = Membership.objects.get(user=admin_b)
    entry_b = AuditEntry.objects.filter(tenant=tenant_b).first()
    for url in (
        f"{KEYS}{key_b.api_key.pk}/change/",
        f"/admin/tenants/membership/{membership_b.pk}/change/",
        f"/admin/tenants/tenant/{tenant_b.pk}/change/",
        f"/admin/tenants/auditentry/{entry_b.pk}/change/",
    ):
        response = admin_client_a.get(url)
        assert response.status_code == 302 and response.url == "/admin/", url
        followed = _content(admin_client_a.get(url, follow=True))
        assert "doesn’t exist" in followed and key_b.api_key.public_id not in followed


def test_tenant_choices_are_scoped_and_a_forged_tenant_b_id_is_refused(
    admin_client_a: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    page = _content(admin_client_a.get(f"{KEYS}add/"))
    assert "tenant-a" in page and "tenant-b" not in page

    response = admin_client_a.post(f"{KEYS}add/", {"tenant": tenant_b.pk, "name": "sneaky"})
    assert response.status_code == 200 and "Select a valid choice" in _content(response)
    assert not APIKey.objects.filter(tenant=tenant_b).exists()


def test_creating_a_key_shows_the_secret_once(
    admin_client_a: Client, tenant_a: Tenant, admin_a: AbstractBaseUser
) -> None:
    response = admin_client_a.post(
        f"{KEYS}add/", {"tenant": tenant_a.pk, "name": "from admin", "allowed_models": "m1, m2"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = APIKey.objects.get(name="from admin")
    raw = next(w for w in _content(response).split(">") if w.startswith(f"aicc_{key.public_id}_"))
    raw = raw.split("<")[0]
    parsed = keys.parse(raw)
    assert parsed is not None and parsed.key_id == key.public_id
    assert key.allowed_models == ["m1", "m2"] and key.created_by_id == admin_a.pk

    change_page = _content(admin_client_a.get(f"{KEYS}{key.pk}/change/"))
    assert raw not in change_page and parsed.digest not in change_page
    assert keys.display_hint(raw) in change_page


def test_rotate_action_uses_the_grace_and_shows_the_new_secret(
    admin_client_a: Client, key_a: IssuedKey
) -> None:
    before = timezone.now()
    response = admin_client_a.post(
        KEYS,
        {"action": "rotate_selected", "_selected_action": [key_a.api_key.pk], "grace": "2h"},
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new_secret = key_a.api_key.secrets.get(status=APIKeySecret.Status.ACTIVE)
    assert new_secret.hint[-4:] in _content(response)
    old = APIKeySecret.objects.get(digest=keys.digest(key_a.raw_key))
    assert old.status == APIKeySecret.Status.DEPRECATED
    assert (
        before + timedelta(hours=2) <= old.deprecated_until <= timezone.now() + timedelta(hours=2)
    )


def test_rotate_action_refuses_a_grace_beyond_30_days(
    admin_client_a: Client, key_a: IssuedKey
) -> None:
    admin_client_a.post(
        KEYS, {"action": "rotate_selected", "_selected_action": [key_a.api_key.pk], "grace": "31d"}
    )
    assert key_a.api_key.secrets.get().status == APIKeySecret.Status.ACTIVE


def test_revoke_action_asks_for_confirmation_then_revokes(
    admin_client_a: Client, key_a: IssuedKey
) -> None:
    selection = {"action": "revoke_selected", "_selected_action": [key_a.api_key.pk]}
    asked = admin_client_a.post(KEYS, selection)
    assert asked.status_code == 200 and "Yes, revoke" in _content(asked)
    assert APIKey.objects.get(pk=key_a.api_key.pk).revoked_at is None

    admin_client_a.post(KEYS, {**selection, "confirm": "yes"})
    assert APIKey.objects.get(pk=key_a.api_key.pk).revoked_at is not None


def test_extend_expiry_action_pushes_the_deadline(admin_client_a: Client, key_a: IssuedKey) -> None:
    expires_at = timezone.now() + timedelta(days=1)
    services.api_key_set_expiry(api_key=key_a.api_key, expires_at=expires_at)
    admin_client_a.post(
        KEYS,
        {"action": "extend_expiry_selected", "_selected_action": [key_a.api_key.pk],
         "extend_by": "30d"},
    )  # fmt: skip
    assert APIKey.objects.get(pk=key_a.api_key.pk).expires_at == expires_at + timedelta(days=30)


def test_actions_cannot_reach_tenant_b_keys(admin_client_a: Client, key_b: IssuedKey) -> None:
    selection = {"_selected_action": [key_b.api_key.pk], "confirm": "yes"}
    admin_client_a.post(KEYS, {**selection, "action": "revoke_selected"})
    admin_client_a.post(KEYS, {**selection, "action": "rotate_selected", "grace": "1h"})
    key = APIKey.objects.get(pk=key_b.api_key.pk)
    assert key.revoked_at is None and key.secrets.get().status == APIKeySecret.Status.ACTIVE


def test_key_list_query_count_does_not_grow_with_the_number_of_keys(
    admin_client_a: Client, tenant_a: Tenant
) -> None:
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client_a.get(KEYS).status_code == 200
        return len(captured)

    for index in range(3):
        services.api_key_create(tenant=tenant_a, name=f"k{index}")
    few = queries_for_page()
    for index in range(30):
        services.api_key_create(tenant=tenant_a, name=f"more{index}")
    assert queries_for_page() == few


def test_search_matches_a_name_prefix_or_a_key_id(admin_client_a: Client, tenant_a: Tenant) -> None:
    billing = services.api_key_create(tenant=tenant_a, name="Billing job")
    other = services.api_key_create(tenant=tenant_a, name="other")
    by_name = _content(admin_client_a.get(KEYS, {"q": "bill"}))
    assert billing.api_key.public_id in by_name and other.api_key.public_id not in by_name
    by_id = _content(admin_client_a.get(KEYS, {"q": f"aicc_{other.api_key.public_id}"}))
    assert other.api_key.public_id in by_id and billing.api_key.public_id not in by_id


def test_tenant_admin_sees_own_tenant_read_only_and_no_audit_of_b(
    admin_client_a: Client, tenant_a: Tenant, key_b: IssuedKey
) -> None:
    tenants_page = _content(admin_client_a.get("/admin/tenants/tenant/"))
    assert "tenant-a" in tenants_page and "tenant-b" not in tenants_page
    response = admin_client_a.post(
        f"/admin/tenants/tenant/{tenant_a.pk}/change/", {"name": "x", "rpm_limit": 999999}
    )
    assert response.status_code == 403
    assert Tenant.objects.get(pk=tenant_a.pk).rpm_limit is None
    audit_page = _content(admin_client_a.get("/admin/tenants/auditentry/"))
    assert key_b.api_key.public_id not in audit_page


def test_membership_admin_changes_role_through_the_service(
    admin_client_a: Client, viewer_a: AbstractBaseUser
) -> None:
    membership = Membership.objects.get(user=viewer_a)
    url = f"/admin/tenants/membership/{membership.pk}/change/"
    assert admin_client_a.post(url, {"role": "owner"}).status_code == 200  # form error
    admin_client_a.post(url, {"role": "admin"})
    assert Membership.objects.get(pk=membership.pk).role == "admin"
    assert AuditEntry.objects.filter(action="membership.set_role").count() == 1


def test_superuser_sees_every_tenant_keys(
    superuser: AbstractBaseUser, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    client = Client()
    client.force_login(superuser)
    page = _content(client.get(KEYS))
    assert key_a.api_key.public_id in page and key_b.api_key.public_id in page


def test_staff_without_a_managing_membership_sees_nothing(
    viewer_a: AbstractBaseUser, key_a: IssuedKey
) -> None:
    client = Client()
    client.force_login(viewer_a)
    assert client.get(KEYS).status_code == 403
