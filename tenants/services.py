"""Writes on tenants and keys. Each returns what the caller needs; secrets are returned once."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from tenants import keys
from tenants.models import APIKey, APIKeySecret, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: APIKey
    raw_key: str  # shown to the caller once, never stored


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    return Tenant.objects.create(slug=slug, name=name or slug)


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str, allowed_models: list[str] | None = None) -> IssuedKey:
    api_key = APIKey.objects.create(
        public_id=keys.new_key_id(), tenant=tenant, name=name, allowed_models=allowed_models or []
    )
    raw_key = keys.compose(api_key.public_id)
    APIKeySecret.objects.create(
        api_key=api_key, digest=keys.digest(raw_key), hint=keys.display_hint(raw_key)
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)
