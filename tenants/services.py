"""Writes on tenants, members and keys.

Each service is keyword-only, writes one audit entry per object it changes and returns what the
caller needs; a raw key is returned once (IssuedKey) and never stored. Services that change what a
key or tenant may do call events.credentials_changed (it fires after commit). Rule violations
raise django.core.exceptions.ValidationError. `now` is injectable; it defaults to timezone.now().
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants import events, keys
from tenants.audit import Actor, audit_record
from tenants.models import APIKey, APIKeySecret, Membership, Tenant

DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=30)
# last_used_at is informational; writing it at most once a minute keeps the hot path write-free.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# Sentinel for "not passed" in update services (None is a meaningful value: unlimited / never).
UNSET: Any = object()

_LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_concurrency")


@dataclass(frozen=True)
class IssuedKey:
    api_key: APIKey
    raw_key: str  # shown to the caller once, never stored


def _now(now: datetime | None) -> datetime:
    return now if now is not None else timezone.now()


def _clean_models(allowed_models: list[str] | None) -> list[str]:
    if allowed_models is None:
        return []
    if not isinstance(allowed_models, list | tuple) or not all(
        isinstance(name, str) and name.strip() for name in allowed_models
    ):
        raise ValidationError({"allowed_models": "must be a list of model names"})
    return sorted({name.strip() for name in allowed_models})


def _clean_limit(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError({field: "must be a positive integer or empty (unlimited)"})
    return value


def _apply(obj: Tenant | APIKey, changes: dict[str, Any]) -> dict[str, Any]:
    """Set the passed fields; return {field: new value} for those that actually changed."""
    changed = {}
    for field, value in changes.items():
        if value is UNSET:
            continue
        if field == "allowed_models":
            value = _clean_models(value)
        elif field in _LIMIT_FIELDS:
            value = _clean_limit(field, value)
        if getattr(obj, field) != value:
            setattr(obj, field, value)
            changed[field] = value
    return changed


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}


# --- Tenants -------------------------------------------------------------------------------------


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str = "",
    allowed_models: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Tenant:
    now = _now(now)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a tenant with slug {slug!r} exists"})
    tenant = Tenant(slug=slug, name=name or slug, created_at=now)
    _apply(
        tenant,
        {
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
        },
    )
    tenant.full_clean()
    tenant.save()
    audit_record(
        tenant=tenant,
        actor=actor,
        action="tenant.create",
        target_type="tenant",
        target_id=tenant.pk,
        details={"slug": slug},
        now=now,
    )
    return tenant


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    name: str = UNSET,
    allowed_models: list[str] | None = UNSET,
    rpm_limit: int | None = UNSET,
    tpm_limit: int | None = UNSET,
    max_concurrency: int | None = UNSET,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Tenant:
    now = _now(now)
    changed = _apply(
        tenant,
        {
            "name": name,
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
        },
    )
    if not changed:
        return tenant
    tenant.full_clean()
    tenant.save(update_fields=list(changed))
    audit_record(
        tenant=tenant,
        actor=actor,
        action="tenant.update",
        target_type="tenant",
        target_id=tenant.pk,
        details={"changed": changed},
        now=now,
    )
    if changed.keys() - {"name"}:
        events.credentials_changed(tenant_id=tenant.pk)
    return tenant


def _tenant_set_status(
    *, tenant: Tenant, status: str, action: str, actor: Actor | None, now: datetime | None
) -> Tenant:
    now = _now(now)
    with transaction.atomic():
        updated = Tenant.objects.filter(pk=tenant.pk).exclude(status=status).update(status=status)
        tenant.status = status
        if updated:
            audit_record(
                tenant=tenant,
                actor=actor,
                action=action,
                target_type="tenant",
                target_id=tenant.pk,
                now=now,
            )
            events.credentials_changed(tenant_id=tenant.pk)
    return tenant


def tenant_suspend(
    *, tenant: Tenant, actor: Actor | None = None, now: datetime | None = None
) -> Tenant:
    """Every key of the tenant stops working (the gateway checks tenant status). Idempotent."""
    return _tenant_set_status(
        tenant=tenant, status=Tenant.Status.SUSPENDED, action="tenant.suspend", actor=actor, now=now
    )


def tenant_reactivate(
    *, tenant: Tenant, actor: Actor | None = None, now: datetime | None = None
) -> Tenant:
    return _tenant_set_status(
        tenant=tenant, status=Tenant.Status.ACTIVE, action="tenant.reactivate", actor=actor, now=now
    )


# --- Members -------------------------------------------------------------------------------------


@transaction.atomic
def membership_add(
    *,
    tenant: Tenant,
    user: AbstractBaseUser,
    role: str = Membership.Role.VIEWER,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Membership:
    now = _now(now)
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Membership.Role.values)}"})
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"user": "already a member of this tenant"})
    membership = Membership.objects.create(tenant=tenant, user=user, role=role, created_at=now)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="membership.add",
        target_type="membership",
        target_id=membership.pk,
        details={"user_id": user.pk, "role": role},
        now=now,
    )
    return membership


def validate_owner_remains(*, membership: Membership) -> None:
    """Removing or demoting `membership` must leave the tenant an owner."""
    if membership.role != Membership.Role.OWNER:
        return
    owners = Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER)
    if not owners.exclude(pk=membership.pk).exists():
        raise ValidationError("a tenant must keep at least one owner")


@transaction.atomic
def membership_set_role(
    *, membership: Membership, role: str, actor: Actor | None = None, now: datetime | None = None
) -> Membership:
    now = _now(now)
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Membership.Role.values)}"})
    if role == membership.role:
        return membership
    if role != Membership.Role.OWNER:
        validate_owner_remains(membership=membership)
    previous, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    audit_record(
        tenant=membership.tenant,
        actor=actor,
        action="membership.set_role",
        target_type="membership",
        target_id=membership.pk,
        details={"user_id": membership.user_id, "from": previous, "to": role},
        now=now,
    )
    return membership


@transaction.atomic
def membership_remove(
    *, membership: Membership, actor: Actor | None = None, now: datetime | None = None
) -> None:
    now = _now(now)
    validate_owner_remains(membership=membership)
    audit_record(
        tenant=membership.tenant,
        actor=actor,
        action="membership.remove",
        target_type="membership",
        target_id=membership.pk,
        details={"user_id": membership.user_id, "role": membership.role},
        now=now,
    )
    membership.delete()


# --- API keys ------------------------------------------------------------------------------------


def validate_key_models(*, tenant: Tenant, allowed_models: list[str]) -> None:
    """A key may only narrow what its tenant allows (forms call this to report early)."""
    outside = set(allowed_models) - set(tenant.allowed_models) if tenant.allowed_models else set()
    if outside:
        raise ValidationError(
            {"allowed_models": f"not allowed for this tenant: {', '.join(sorted(outside))}"}
        )


def validate_expiry(*, expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "must be in the future"})


def _new_secret(api_key: APIKey, now: datetime) -> str:
    raw_key = keys.compose(api_key.public_id)
    APIKeySecret.objects.create(
        api_key=api_key,
        digest=keys.digest(raw_key),
        hint=keys.display_hint(raw_key),
        created_at=now,
    )
    return raw_key


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    is_admin: bool = False,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    now = _now(now)
    if not name.strip():
        raise ValidationError({"name": "must not be empty"})
    validate_expiry(expires_at=expires_at, now=now)
    api_key = APIKey(
        public_id=keys.new_key_id(),
        tenant=tenant,
        name=name.strip(),
        expires_at=expires_at,
        is_admin=is_admin,
        created_at=now,
        created_by=actor.user if actor and actor.user and actor.user.is_authenticated else None,
    )
    _apply(
        api_key,
        {
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
        },
    )
    validate_key_models(tenant=tenant, allowed_models=api_key.allowed_models)
    api_key.save()
    raw_key = _new_secret(api_key, now)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="api_key.create",
        target_type="api_key",
        target_id=api_key.public_id,
        details={"name": api_key.name, "hint": keys.display_hint(raw_key), "is_admin": is_admin},
        now=now,
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def _locked(api_key: APIKey) -> APIKey:
    # Row lock: two concurrent rotations must not both leave an active secret behind.
    return APIKey.objects.select_for_update().select_related("tenant").get(pk=api_key.pk)


@transaction.atomic
def api_key_update(
    *,
    api_key: APIKey,
    name: str = UNSET,
    allowed_models: list[str] | None = UNSET,
    rpm_limit: int | None = UNSET,
    tpm_limit: int | None = UNSET,
    max_concurrency: int | None = UNSET,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> APIKey:
    now = _now(now)
    if name is not UNSET and not name.strip():
        raise ValidationError({"name": "must not be empty"})
    changed = _apply(
        api_key,
        {
            "name": name if name is UNSET else name.strip(),
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
        },
    )
    if not changed:
        return api_key
    validate_key_models(tenant=api_key.tenant, allowed_models=api_key.allowed_models)
    api_key.save(update_fields=list(changed))
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="api_key.update",
        target_type="api_key",
        target_id=api_key.public_id,
        details={"changed": changed},
        now=now,
    )
    events.credentials_changed(key_public_id=api_key.public_id)
    return api_key


@transaction.atomic
def api_key_rotate(
    *,
    api_key: APIKey,
    grace: timedelta = DEFAULT_GRACE,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    """A new active secret; active secrets become deprecated until now + grace.

    Secrets that are already deprecated keep their deadline: rotating again never extends it.
    A zero grace ends the old secrets now.
    """
    now = _now(now)
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise ValidationError({"grace": f"must be between 0 and {MAX_GRACE.days} days"})
    api_key = _locked(api_key)
    if api_key.is_revoked:
        raise ValidationError("a revoked key cannot be rotated")
    deprecated_until = now + grace
    deprecated = api_key.secrets.filter(status=APIKeySecret.Status.ACTIVE).update(
        status=APIKeySecret.Status.DEPRECATED, deprecated_until=deprecated_until
    )
    raw_key = _new_secret(api_key, now)
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="api_key.rotate",
        target_type="api_key",
        target_id=api_key.public_id,
        details={
            "hint": keys.display_hint(raw_key),
            "grace_s": int(grace.total_seconds()),
            "deprecated_secrets": deprecated,
            "deprecated_until": deprecated_until.isoformat(),
        },
        now=now,
    )
    events.credentials_changed(key_public_id=api_key.public_id)
    return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(
    *, api_key: APIKey, actor: Actor | None = None, now: datetime | None = None
) -> APIKey:
    """Immediately and for good: every secret is revoked. Revoking twice changes nothing."""
    now = _now(now)
    api_key = _locked(api_key)
    if api_key.is_revoked:
        return api_key
    api_key.revoked_at = now
    api_key.save(update_fields=["revoked_at"])
    revoked = api_key.secrets.exclude(status=APIKeySecret.Status.REVOKED).update(
        status=APIKeySecret.Status.REVOKED
    )
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="api_key.revoke",
        target_type="api_key",
        target_id=api_key.public_id,
        details={"revoked_secrets": revoked},
        now=now,
    )
    events.credentials_changed(key_public_id=api_key.public_id)
    return api_key


@transaction.atomic
def api_key_set_expiry(
    *,
    api_key: APIKey,
    expires_at: datetime | None,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> APIKey:
    """Set (typically extend) the expiry; None means never. It must lie in the future."""
    now = _now(now)
    api_key = _locked(api_key)
    if api_key.is_revoked:
        raise ValidationError("a revoked key cannot be changed")
    validate_expiry(expires_at=expires_at, now=now)
    if expires_at == api_key.expires_at:
        return api_key
    previous, api_key.expires_at = api_key.expires_at, expires_at
    api_key.save(update_fields=["expires_at"])
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="api_key.set_expiry",
        target_type="api_key",
        target_id=api_key.public_id,
        details=_jsonable({"from": previous, "to": expires_at}),
        now=now,
    )
    events.credentials_changed(key_public_id=api_key.public_id)
    return api_key


def api_key_touch_last_used(*, key_public_id: str, now: datetime | None = None) -> bool:
    """Record use; one UPDATE that writes only when the stored value is a minute old or more.

    Not audited and no event: it changes nothing a key may do. Returns whether it wrote.
    """
    now = _now(now)
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    return bool(APIKey.objects.filter(stale, public_id=key_public_id).update(last_used_at=now))
