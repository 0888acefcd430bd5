"""Tenant lifecycle: create, update, suspend, reactivate."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from tenants import events
from tenants.audit import Actor, audit_record
from tenants.models import Tenant
from tenants.services._fields import UNSET, apply_changes, now_or_default


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str = "",
    allowed_models: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_concurrency: int | None = None,
    is_response_cache_enabled: bool = True,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Tenant:
    now = now_or_default(now)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a tenant with slug {slug!r} exists"})
    tenant = Tenant(slug=slug, name=name or slug, created_at=now)
    apply_changes(
        tenant,
        {
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
            "is_response_cache_enabled": is_response_cache_enabled,
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
    is_response_cache_enabled: bool = UNSET,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Tenant:
    now = now_or_default(now)
    changed = apply_changes(
        tenant,
        {
            "name": name,
            "allowed_models": allowed_models,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_concurrency": max_concurrency,
            "is_response_cache_enabled": is_response_cache_enabled,
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
    now = now_or_default(now)
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
