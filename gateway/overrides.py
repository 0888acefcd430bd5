"""Per-tenant routing overrides: the selector the gateway reads through, and the audited writes.

A save or delete bumps the credentials version (tenants.events) after commit, which every
gateway process polls (gateway.routing.Router watches it) and then drops its cached overrides.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from gateway.models import TenantRoutingOverride
from tenants.audit import Actor, audit_record
from tenants.events import credentials_changed


def routing_override_document(*, tenant_id: int) -> str | None:
    """The tenant's enabled override document, or None (no override, disabled or empty)."""
    document = (
        TenantRoutingOverride.objects.filter(tenant_id=tenant_id, is_enabled=True)
        .values_list("document", flat=True)
        .first()
    )
    return document if document and document.strip() else None


@transaction.atomic
def routing_override_save(
    *, override: TenantRoutingOverride, actor: Actor | None = None
) -> TenantRoutingOverride:
    """Validate (ValidationError names the field paths) and store the override."""
    override.full_clean()
    now = timezone.now()
    is_new = override.pk is None
    override.updated_at = now
    override.save()
    audit_record(
        tenant=override.tenant,
        actor=actor,
        action="routing_override.create" if is_new else "routing_override.update",
        target_type="routing_override",
        target_id=override.pk,
        details={"is_enabled": override.is_enabled},
        now=now,
    )
    credentials_changed(tenant_id=override.tenant_id)
    return override


@transaction.atomic
def routing_override_delete(*, override: TenantRoutingOverride, actor: Actor | None = None) -> None:
    tenant, override_id = override.tenant, override.pk
    override.delete()
    audit_record(
        tenant=tenant,
        actor=actor,
        action="routing_override.delete",
        target_type="routing_override",
        target_id=override_id,
        now=timezone.now(),
    )
    credentials_changed(tenant_id=tenant.pk)
