"""Tenant scoping for the admin: one mixin every tenant-owned ModelAdmin inherits.

Membership is the authority, not Django model permissions: a staff user with an owner/admin
membership manages that tenant's objects without any auth.Permission rows, and a staff user
with none sees nothing. An object of another tenant is absent from get_queryset, so its change
URL answers like a missing object.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from tenants import selectors
from tenants.audit import Actor
from tenants.models import Membership, Tenant

_CACHE_ATTR = "_aicc_managed_tenant_ids"


def managed_tenant_ids(request: HttpRequest) -> list[int] | None:
    """None for a superuser (no restriction); else the tenants the user owns or administers."""
    if request.user.is_superuser:
        return None
    if not hasattr(request, _CACHE_ATTR):
        setattr(request, _CACHE_ATTR, selectors.managed_tenant_ids(user=request.user))
    return getattr(request, _CACHE_ATTR)


def is_owner_of(request: HttpRequest, tenant_id: int) -> bool:
    if request.user.is_superuser:
        return True
    return Membership.objects.filter(
        user=request.user, tenant_id=tenant_id, role=Membership.Role.OWNER
    ).exists()


def admin_actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, via="admin")


class TenantScopedAdmin(admin.ModelAdmin):
    # The lookup from this model to its tenant's id.
    tenant_id_path = "tenant_id"
    # Tenant admins may add/change here (False: view only).
    is_managed_by_tenant_admins = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        tenant_ids = managed_tenant_ids(request)
        if tenant_ids is None:
            return queryset
        return queryset.filter(**{f"{self.tenant_id_path}__in": tenant_ids})

    def _object_tenant_id(self, obj: Model) -> int:
        value: Any = obj
        for part in self.tenant_id_path.split("__"):
            value = getattr(value, part)
        return value

    def _allows(self, request: HttpRequest, obj: Model | None) -> bool:
        tenant_ids = managed_tenant_ids(request)
        if tenant_ids is None:
            return True
        if not tenant_ids:
            return False
        return obj is None or self._object_tenant_id(obj) in tenant_ids

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff and self._allows(request, None)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request) and self._allows(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return True
        return self.is_managed_by_tenant_admins and self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if request.user.is_superuser:
            return True
        return self.is_managed_by_tenant_admins and self.has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # keys are revoked, tenants suspended; rows stay for the audit trail

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.related_model is Tenant:
            tenant_ids = managed_tenant_ids(request)
            if tenant_ids is not None:
                kwargs["queryset"] = Tenant.objects.filter(pk__in=tenant_ids).order_by("slug")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
