"""Named actors for tenant tests: tenant A with its admin member, outsider tenant B with its own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser

from tenants import services
from tenants.models import Membership, Tenant
from tenants.services import IssuedKey

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def tenant_a(db: None, now: datetime) -> Tenant:
    return services.tenant_create(slug="tenant-a", name="Tenant A", now=now)


@pytest.fixture
def tenant_b(db: None, now: datetime) -> Tenant:
    return services.tenant_create(slug="tenant-b", name="Tenant B", now=now)


def _member(tenant: Tenant, username: str, role: str) -> AbstractBaseUser:
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=True)
    services.membership_add(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def admin_a(tenant_a: Tenant) -> AbstractBaseUser:
    """Tenant A's admin member (staff, so the Django admin lets them in)."""
    return _member(tenant_a, "alice-admin-a", Membership.Role.ADMIN)


@pytest.fixture
def viewer_a(tenant_a: Tenant) -> AbstractBaseUser:
    return _member(tenant_a, "victor-viewer-a", Membership.Role.VIEWER)


@pytest.fixture
def admin_b(tenant_b: Tenant) -> AbstractBaseUser:
    """The outsider: tenant B's admin member."""
    return _member(tenant_b, "bob-admin-b", Membership.Role.ADMIN)


@pytest.fixture
def superuser(db: None) -> AbstractBaseUser:
    return get_user_model().objects.create_superuser(username="root", password="pw")


@pytest.fixture
def key_a(tenant_a: Tenant, now: datetime) -> IssuedKey:
    return services.api_key_create(tenant=tenant_a, name="key of A", now=now)


@pytest.fixture
def key_b(tenant_b: Tenant, now: datetime) -> IssuedKey:
    return services.api_key_create(tenant=tenant_b, name="key of B", now=now)
