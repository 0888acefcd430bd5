"""API key lifecycle: create (secret once), update, rotate with grace, revoke, expiry, use."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from tenants import events, keys
from tenants.audit import Actor, audit_record
from tenants.models import APIKey, APIKeySecret, Tenant
from tenants.services._fields import UNSET, apply_changes, jsonable, now_or_default

DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=30)
# last_used_at is informational; writing it at most once a minute keeps the hot path write-free.
LAST_USED_RESOLUTION = timedelta(seconds=60)
TOUCH_BATCH_SIZE = 500


@dataclass(frozen=True)
class IssuedKey:
    api_key: APIKey
    raw_key: str  # shown to the caller once, never stored


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
    now = now_or_default(now)
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
    apply_changes(
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
    now = now_or_default(now)
    if name is not UNSET and not name.strip():
        raise ValidationError({"name": "must not be empty"})
    changed = apply_changes(
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
    _record_key_change(
        api_key, action="api_key.update", details={"changed": changed}, actor=actor, now=now
    )
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
    now = now_or_default(now)
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
    _record_key_change(
        api_key,
        action="api_key.rotate",
        details={
            "hint": keys.display_hint(raw_key),
            "grace_s": int(grace.total_seconds()),
            "deprecated_secrets": deprecated,
            "deprecated_until": deprecated_until.isoformat(),
        },
        actor=actor,
        now=now,
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(
    *, api_key: APIKey, actor: Actor | None = None, now: datetime | None = None
) -> APIKey:
    """Immediately and for good: every secret is revoked. Revoking twice changes nothing."""
    now = now_or_default(now)
    api_key = _locked(api_key)
    if api_key.is_revoked:
        return api_key
    api_key.revoked_at = now
    api_key.save(update_fields=["revoked_at"])
    revoked = api_key.secrets.exclude(status=APIKeySecret.Status.REVOKED).update(
        status=APIKeySecret.Status.REVOKED
    )
    _record_key_change(
        api_key, action="api_key.revoke", details={"revoked_secrets": revoked}, actor=actor, now=now
    )
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
    now = now_or_default(now)
    api_key = _locked(api_key)
    if api_key.is_revoked:
        raise ValidationError("a revoked key cannot be changed")
    validate_expiry(expires_at=expires_at, now=now)
    if expires_at == api_key.expires_at:
        return api_key
    previous, api_key.expires_at = api_key.expires_at, expires_at
    api_key.save(update_fields=["expires_at"])
    _record_key_change(
        api_key,
        action="api_key.set_expiry",
        details=jsonable({"from": previous, "to": expires_at}),
        actor=actor,
        now=now,
    )
    return api_key


def api_keys_touch_last_used(
    *, key_public_ids: Collection[str], now: datetime | None = None
) -> int:
    """Record use of these keys: one UPDATE per 500 keys, writing only rows whose stored value
    is a minute old or more.

    Not audited and no event: it changes nothing a key may do. Returns how many rows it wrote.
    """
    now = now_or_default(now)
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    ids = list(key_public_ids)
    written = 0
    for start in range(0, len(ids), TOUCH_BATCH_SIZE):
        batch = ids[start : start + TOUCH_BATCH_SIZE]
        written += APIKey.objects.filter(stale, public_id__in=batch).update(last_used_at=now)
    return written


def _record_key_change(
    api_key: APIKey, *, action: str, details: dict[str, Any], actor: Actor | None, now: datetime
) -> None:
    """Audit a change to what a key may do, and tell every gateway (after commit) to reload it."""
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action=action,
        target_type="api_key",
        target_id=api_key.public_id,
        details=details,
        now=now,
    )
    events.credentials_changed(key_public_id=api_key.public_id)
