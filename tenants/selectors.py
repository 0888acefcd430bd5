"""Reads on tenants, members, keys and the audit log.

Anything tenant-scoped takes the tenant first, so no query can forget it. `credential_record` is
the hot-path read: one query, a frozen result the gateway may cache until events tell it to drop.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import FilteredRelation, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from tenants.models import APIKey, APIKeySecret, AuditEntry, Membership, Tenant

# Deprecated secrets stay in the record this long after their grace ends (bounded: one row per
# rotation in that window), only so a refusal can say why; they never match.
RECENTLY_ENDED_GRACE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Limits:
    """None means unlimited at this level."""

    rpm: int | None
    tpm: int | None
    max_concurrency: int | None


@dataclass(frozen=True, slots=True)
class SecretRecord:
    secret_id: int
    digest: str
    status: str  # APIKeySecret.Status: "active" or "deprecated" (revoked ones are not loaded)
    deprecated_until: datetime | None
    created_at: datetime

    @property
    def is_deprecated(self) -> bool:
        return self.status == APIKeySecret.Status.DEPRECATED

    def is_usable(self, now: datetime) -> bool:
        if self.status == APIKeySecret.Status.ACTIVE:
            return True
        return (
            self.is_deprecated and self.deprecated_until is not None and now < self.deprecated_until
        )


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """Everything the gateway needs to accept or refuse a key, without further queries.

    `allowed_models` is the effective set (see effective_allowed_models): None = any model,
    an empty frozenset = none. `key_limits` and `tenant_limits` both apply; the gateway enforces
    each at its own level. `secrets` holds the active secret and the deprecated ones whose grace
    ends, or ended less than RECENTLY_ENDED_GRACE ago (so the gateway can answer "rotated, grace
    ended" rather than "unknown key"); revoked secrets are not loaded. `match` checks deadlines
    against the caller's clock, so neither a stale cache nor a recently ended secret is accepted.
    """

    tenant_id: int
    tenant_slug: str
    tenant_status: str
    key_id: int
    key_public_id: str
    key_name: str
    is_admin: bool
    allowed_models: frozenset[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    key_limits: Limits
    tenant_limits: Limits
    secrets: tuple[SecretRecord, ...]
    is_response_cache_enabled: bool = True

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_tenant_active(self) -> bool:
        return self.tenant_status == Tenant.Status.ACTIVE

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def is_model_allowed(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def deprecated_at(self, secret: SecretRecord) -> datetime | None:
        """When `secret` was deprecated: the creation of the secret that replaced it."""
        later = [s.created_at for s in self.secrets if s.created_at > secret.created_at]
        return min(later) if secret.is_deprecated and later else None

    def match(self, digest: str, now: datetime) -> SecretRecord | None:
        """The usable secret with this digest, or None. Compares every secret in constant time.

        Only the secret is checked here: revocation, expiry and tenant status are separate
        so the caller can say which one failed.
        """
        found = None
        for secret in self.secrets:
            if hmac.compare_digest(secret.digest, digest) and secret.is_usable(now):
                found = secret
        return found


def effective_allowed_models(
    *, tenant_models: Iterable[str], key_models: Iterable[str]
) -> frozenset[str] | None:
    """An empty list means "no restriction" at its level; both levels must allow a model.

    tenant [] + key []      -> None (any model)
    tenant [] + key [a]     -> {a}
    tenant [a,b] + key []   -> {a, b}
    tenant [a,b] + key [b,c]-> {b} (the intersection; may be empty, which allows nothing)
    """
    tenant_set, key_set = frozenset(tenant_models), frozenset(key_models)
    if not tenant_set:
        return key_set or None
    if not key_set:
        return tenant_set
    return tenant_set & key_set


_RECORD_FIELDS = (
    "id",
    "public_id",
    "name",
    "is_admin",
    "allowed_models",
    "expires_at",
    "revoked_at",
    "rpm_limit",
    "tpm_limit",
    "max_concurrency",
    "tenant_id",
    "tenant__slug",
    "tenant__status",
    "tenant__allowed_models",
    "tenant__rpm_limit",
    "tenant__tpm_limit",
    "tenant__max_concurrency",
    "tenant__is_response_cache_enabled",
    "live_secret__id",
    "live_secret__digest",
    "live_secret__status",
    "live_secret__deprecated_until",
    "live_secret__created_at",
)


def credential_record(
    *, key_public_id: str, now: datetime | None = None
) -> CredentialRecord | None:
    """The key with its tenant and usable secrets in ONE query, or None if there is no such key.

    A LEFT JOIN on the secrets filtered to the live ones yields one row per live secret (or one
    row with NULL secret columns for a revoked key, which is still returned so the gateway can
    say "revoked" rather than "unknown").
    """
    now = now if now is not None else timezone.now()
    live = Q(secrets__status=APIKeySecret.Status.ACTIVE) | Q(
        secrets__status=APIKeySecret.Status.DEPRECATED,
        secrets__deprecated_until__gt=now - RECENTLY_ENDED_GRACE,
    )
    rows = list(
        APIKey.objects.filter(public_id=key_public_id)
        .annotate(live_secret=FilteredRelation("secrets", condition=live))
        .values(*_RECORD_FIELDS)
    )
    if not rows:
        return None
    row = rows[0]
    return CredentialRecord(
        tenant_id=row["tenant_id"],
        tenant_slug=row["tenant__slug"],
        tenant_status=row["tenant__status"],
        key_id=row["id"],
        key_public_id=row["public_id"],
        key_name=row["name"],
        is_admin=row["is_admin"],
        allowed_models=effective_allowed_models(
            tenant_models=row["tenant__allowed_models"], key_models=row["allowed_models"]
        ),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        key_limits=Limits(row["rpm_limit"], row["tpm_limit"], row["max_concurrency"]),
        tenant_limits=Limits(
            row["tenant__rpm_limit"], row["tenant__tpm_limit"], row["tenant__max_concurrency"]
        ),
        secrets=tuple(
            SecretRecord(
                r["live_secret__id"],
                r["live_secret__digest"],
                r["live_secret__status"],
                r["live_secret__deprecated_until"],
                r["live_secret__created_at"],
            )
            for r in rows
            if r["live_secret__digest"] is not None
        ),
        is_response_cache_enabled=row["tenant__is_response_cache_enabled"],
    )


# --- Tenant-scoped reads --------------------------------------------------------------------------


def tenant_list() -> QuerySet[Tenant]:
    """All tenants: for platform operators (superusers, master keys) only."""
    return Tenant.objects.order_by("slug")


def tenant_get(*, tenant_id: int) -> Tenant | None:
    return Tenant.objects.filter(pk=tenant_id).first()


def managed_tenant_ids(*, user: AbstractBaseUser) -> list[int]:
    """Tenants where the user is owner or admin (what the Django admin scopes to)."""
    return list(
        Membership.objects.filter(user=user, role__in=Membership.MANAGING_ROLES).values_list(
            "tenant_id", flat=True
        )
    )


def membership_for(*, user: AbstractBaseUser, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(user=user, tenant=tenant).first()


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("id")


def membership_get(*, tenant: Tenant, membership_id: int) -> Membership | None:
    return membership_list(tenant=tenant).filter(pk=membership_id).first()


def annotate_active_hint(queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
    active = APIKeySecret.objects.filter(api_key=OuterRef("pk"), status=APIKeySecret.Status.ACTIVE)
    return queryset.annotate(active_hint=Subquery(active.order_by("-id").values("hint")[:1]))


def api_key_list(*, tenant: Tenant, include_revoked: bool = True) -> QuerySet[APIKey]:
    """Newest first (index apikey_tenant_newest), each with `active_hint` annotated."""
    queryset = APIKey.objects.filter(tenant=tenant)
    if not include_revoked:
        queryset = queryset.filter(revoked_at__isnull=True)
    return annotate_active_hint(queryset.select_related("tenant")).order_by("-id")


def api_key_get(*, tenant: Tenant, key_public_id: str) -> APIKey | None:
    return api_key_list(tenant=tenant).filter(public_id=key_public_id).first()


def api_key_secret_list(*, tenant: Tenant, api_key: APIKey) -> QuerySet[APIKeySecret]:
    return APIKeySecret.objects.filter(api_key=api_key, api_key__tenant=tenant).order_by("-id")


def audit_list(*, tenant: Tenant, action: str | None = None) -> QuerySet[AuditEntry]:
    """Newest first (index audit_tenant_newest)."""
    queryset = AuditEntry.objects.filter(tenant=tenant)
    if action:
        queryset = queryset.filter(action=action)
    return queryset.select_related("actor").order_by("-created_at", "-id")
