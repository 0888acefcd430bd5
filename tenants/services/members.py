"""Membership of users in tenants, with roles; a tenant always keeps an owner."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant
from tenants.services._fields import now_or_default


@transaction.atomic
def membership_add(
    *,
    tenant: Tenant,
    user: AbstractBaseUser,
    role: str = Membership.Role.VIEWER,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Membership:
    now = now_or_default(now)
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
    now = now_or_default(now)
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
    now = now_or_default(now)
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
