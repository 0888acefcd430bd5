"""Admin: per-tenant routing overrides. Superusers edit them; tenant admins may only look.

Overrides can relax the operator's guard rails (e.g. allow personal data to a cloud model), so
they are the platform's to set, like tenant limits.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from gateway.models import TenantRoutingOverride
from gateway.overrides import routing_override_delete, routing_override_save
from tenants.admin.scoping import TenantScopedAdmin, admin_actor


@admin.register(TenantRoutingOverride)
class TenantRoutingOverrideAdmin(TenantScopedAdmin):
    is_managed_by_tenant_admins = False
    list_display = ("tenant", "is_enabled", "updated_at")
    list_filter = ("is_enabled",)
    search_fields = ("^tenant__slug",)
    readonly_fields = ("updated_at",)
    ordering = ("tenant__slug",)
    list_select_related = ("tenant",)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def save_model(
        self, request: HttpRequest, obj: TenantRoutingOverride, form: Any, change: bool
    ) -> None:
        routing_override_save(override=obj, actor=admin_actor(request))

    def delete_model(self, request: HttpRequest, obj: TenantRoutingOverride) -> None:
        routing_override_delete(override=obj, actor=admin_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for override in queryset:
            routing_override_delete(override=override, actor=admin_actor(request))
