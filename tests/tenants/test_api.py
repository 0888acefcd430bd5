"""Management API: tenant isolation (tenant A and its admin vs outsider tenant B), auth, roles."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from tenants import keys, services
from tenants.models import APIKey, APIKeySecret, AuditEntry, Membership, Tenant
from tenants.services import IssuedKey

MASTER = "master-" + "k" * 40


@pytest.fixture(autouse=True)
def _fresh_rate_limits(redis_client: redis.Redis) -> None:
    """The rate-limit counters live in Redis; redis_client empties it before each test."""


@pytest.fixture
def client_a(admin_a: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.force_login(admin_a)
    return client


def _bearer(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def admin_key_a(tenant_a: Tenant) -> IssuedKey:
    return services.api_key_create(tenant=tenant_a, name="automation", is_admin=True)


def test_admin_of_a_lists_only_tenant_a_keys(
    client_a: APIClient, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    response = client_a.get("/api/v1/keys/")
    assert response.status_code == 200
    assert [k["public_id"] for k in response.json()["results"]] == [key_a.api_key.public_id]
    assert response.json()["results"][0]["active_hint"] == keys.display_hint(key_a.raw_key)
    assert "key" not in response.json()["results"][0]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"name": "taken over"}),
        ("post", "rotate/", {"grace_s": 60}),
        ("post", "revoke/", None),
    ],
)
def test_admin_of_a_cannot_touch_tenant_b_keys(
    client_a: APIClient, key_b: IssuedKey, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    url = f"/api/v1/keys/{key_b.api_key.public_id}/{suffix}"
    response = getattr(client_a, method)(url, body, format="json")

    assert response.status_code == 404
    key = APIKey.objects.get(pk=key_b.api_key.pk)
    assert key.name == "key of B" and key.revoked_at is None
    assert key.secrets.get().status == APIKeySecret.Status.ACTIVE


def test_tenant_ids_in_a_post_body_are_ignored(
    client_a: APIClient, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    response = client_a.post(
        "/api/v1/keys/",
        {"name": "mine", "tenant": tenant_b.pk, "tenant_id": tenant_b.pk},
        format="json",
    )
    assert response.status_code == 201
    created = APIKey.objects.get(public_id=response.json()["public_id"])
    assert created.tenant_id == tenant_a.pk


def test_create_returns_the_secret_once_and_it_works(client_a: APIClient, admin_a: Any) -> None:
    response = client_a.post(
        "/api/v1/keys/", {"name": "ci", "allowed_models": ["m1"], "rpm_limit": 5}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    parsed = keys.parse(body["key"])
    assert parsed is not None and parsed.key_id == body["public_id"]
    assert APIKeySecret.objects.filter(digest=parsed.digest, status="active").exists()
    assert APIKey.objects.get(public_id=body["public_id"]).created_by_id == admin_a.pk

    again = client_a.get(f"/api/v1/keys/{body['public_id']}/").json()
    assert "key" not in again and body["key"] not in str(again)


def test_rotate_through_the_api_deprecates_the_old_secret_with_the_grace(
    client_a: APIClient, key_a: IssuedKey
) -> None:
    before = timezone.now()
    response = client_a.post(
        f"/api/v1/keys/{key_a.api_key.public_id}/rotate/", {"grace_s": 3600}, format="json"
    )
    assert response.status_code == 200
    assert keys.parse(response.json()["key"]) is not None
    old = APIKeySecret.objects.get(digest=keys.digest(key_a.raw_key))
    assert old.status == "deprecated"
    assert (
        before + timedelta(hours=1) <= old.deprecated_until <= timezone.now() + timedelta(hours=1)
    )


def test_rotate_grace_beyond_30_days_is_refused(client_a: APIClient, key_a: IssuedKey) -> None:
    url = f"/api/v1/keys/{key_a.api_key.public_id}/rotate/"
    response = client_a.post(url, {"grace_s": 30 * 86400 + 1}, format="json")
    assert response.status_code == 400
    assert key_a.api_key.secrets.get().status == "active"


def test_revoke_through_the_api_is_immediate_and_rotating_it_after_is_a_400(
    client_a: APIClient, key_a: IssuedKey
) -> None:
    url = f"/api/v1/keys/{key_a.api_key.public_id}/"
    assert client_a.post(url + "revoke/").json()["state"] == "revoked"
    assert client_a.post(url + "rotate/", {}, format="json").status_code == 400


def test_tenant_admin_key_acts_on_its_own_tenant_only(
    admin_key_a: IssuedKey, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    client = _bearer(admin_key_a.raw_key)
    listed = client.get("/api/v1/keys/").json()["results"]
    assert {k["public_id"] for k in listed} == {
        admin_key_a.api_key.public_id,
        key_a.api_key.public_id,
    }
    assert client.get(f"/api/v1/keys/{key_b.api_key.public_id}/").status_code == 404
    assert client.get("/api/v1/keys/", HTTP_X_AICC_TENANT="tenant-b").status_code == 404

    client.post(f"/api/v1/keys/{key_a.api_key.public_id}/revoke/")
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert entry.actor_key_id == admin_key_a.api_key.public_id and entry.actor is None


def test_tenant_admin_key_cannot_mint_more_admin_keys(admin_key_a: IssuedKey) -> None:
    response = _bearer(admin_key_a.raw_key).post(
        "/api/v1/keys/", {"name": "x", "is_admin": True}, format="json"
    )
    assert response.status_code == 400


def test_ordinary_keys_and_bad_keys_are_refused(key_a: IssuedKey, admin_key_a: IssuedKey) -> None:
    assert _bearer(key_a.raw_key).get("/api/v1/keys/").status_code == 403
    assert _bearer("aicc_not-a-key").get("/api/v1/keys/").status_code == 401
    services.api_key_revoke(api_key=admin_key_a.api_key)
    assert _bearer(admin_key_a.raw_key).get("/api/v1/keys/").status_code == 401
    assert APIClient().get("/api/v1/keys/").status_code in (401, 403)


def test_admin_key_stops_working_once_its_grace_ends(admin_key_a: IssuedKey, now: datetime) -> None:
    services.api_key_rotate(api_key=admin_key_a.api_key, grace=timedelta(0))
    assert _bearer(admin_key_a.raw_key).get("/api/v1/keys/").status_code == 401


@override_settings(AICC_MASTER_KEYS=[MASTER])
def test_master_key_manages_tenants_and_any_tenant_keys(tenant_a: Tenant, key_b: IssuedKey) -> None:
    client = _bearer(MASTER)
    slugs = {t["slug"] for t in client.get("/api/v1/tenants/").json()["results"]}
    assert slugs == {"tenant-a", "tenant-b"}
    listed = client.get("/api/v1/keys/", HTTP_X_AICC_TENANT="tenant-b").json()["results"]
    assert [k["public_id"] for k in listed] == [key_b.api_key.public_id]
    assert client.get("/api/v1/keys/").status_code == 400  # which tenant?

    created = client.post("/api/v1/tenants/", {"slug": "tenant-c", "rpm_limit": 10}, format="json")
    assert created.status_code == 201
    suspended = client.post(f"/api/v1/tenants/{tenant_a.pk}/suspend/")
    assert suspended.json()["status"] == "suspended"
    entry = AuditEntry.objects.get(action="tenant.suspend")
    assert entry.actor_key_id.startswith("master:") and MASTER not in entry.actor_key_id


def test_tenants_endpoint_is_for_platform_operators_only(
    client_a: APIClient, superuser: AbstractBaseUser, tenant_b: Tenant
) -> None:
    assert client_a.get("/api/v1/tenants/").status_code == 403
    assert client_a.post(f"/api/v1/tenants/{tenant_b.pk}/suspend/").status_code == 403
    root = APIClient()
    root.force_login(superuser)
    assert root.get(f"/api/v1/tenants/{tenant_b.pk}/").json()["slug"] == "tenant-b"


def test_viewer_reads_but_cannot_write(viewer_a: AbstractBaseUser, key_a: IssuedKey) -> None:
    client = APIClient()
    client.force_login(viewer_a)
    assert client.get("/api/v1/keys/").status_code == 200
    assert client.post("/api/v1/keys/", {"name": "x"}, format="json").status_code == 403
    url = f"/api/v1/keys/{key_a.api_key.public_id}/revoke/"
    assert client.post(url).status_code == 403


def test_members_are_scoped_and_admins_cannot_grant_owner(
    client_a: APIClient, admin_b: AbstractBaseUser, viewer_a: AbstractBaseUser
) -> None:
    b_membership = Membership.objects.get(user=admin_b)
    assert client_a.delete(f"/api/v1/members/{b_membership.pk}/").status_code == 404
    assert Membership.objects.filter(pk=b_membership.pk).exists()

    usernames = {m["username"] for m in client_a.get("/api/v1/members/").json()["results"]}
    assert usernames == {"alice-admin-a", "victor-viewer-a"}

    viewer = Membership.objects.get(user=viewer_a)
    url = f"/api/v1/members/{viewer.pk}/"
    assert client_a.patch(url, {"role": "owner"}, format="json").status_code == 403
    assert client_a.patch(url, {"role": "admin"}, format="json").json()["role"] == "admin"

    added = client_a.post("/api/v1/members/", {"username": "bob-admin-b"}, format="json")
    assert added.status_code == 201 and added.json()["role"] == "viewer"


def test_audit_log_shows_only_the_callers_tenant(
    client_a: APIClient, key_a: IssuedKey, key_b: IssuedKey
) -> None:
    entries = client_a.get("/api/v1/audit/").json()["results"]
    assert entries and {e["target_id"] for e in entries if e["target_type"] == "api_key"} == {
        key_a.api_key.public_id
    }
    b_entry = AuditEntry.objects.filter(tenant=key_b.api_key.tenant).first()
    assert client_a.get(f"/api/v1/audit/{b_entry.pk}/").status_code == 404


@override_settings(AICC_MANAGEMENT_API_RATE="3/m")
def test_management_api_is_rate_limited_per_caller(
    client_a: APIClient, admin_b: AbstractBaseUser
) -> None:
    codes = [client_a.get("/api/v1/keys/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    other = APIClient()
    other.force_login(admin_b)
    assert other.get("/api/v1/keys/").status_code == 200
