"""Tenants in the admin. Tenant admins see their tenant read-only: limits are the platform's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants import services
from tenants.admin.forms import ModelNamesField
from tenants.admin.scoping import TenantScopedAdmin, admin_actor
from tenants.models import Tenant

_EDITABLE = (
    "name", "allowed_models", "rpm_limit", "tpm_limit", "max_concurrency",
    "is_response_cache_enabled",
)  # fmt: skip


class TenantForm(forms.ModelForm):
    allowed_models = ModelNamesField()

    class Meta:
        model = Tenant
        fields = ("slug", *_EDITABLE)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_id_path = "id"
    is_managed_by_tenant_admins = False
    form = TenantForm
    list_display = ("slug", "name", "status", "rpm_limit", "tpm_limit", "max_concurrency")
    list_filter = ("status",)
    search_fields = ("^slug", "^name")
    ordering = ("slug",)
    show_full_result_count = False
    actions = ("suspend_selected", "reactivate_selected")

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        base = ("status", "created_at")
        return ("slug", *base) if obj is not None else base

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("suspend_selected", None)
            actions.pop("reactivate_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in _EDITABLE}
        if change:
            # `obj` already carries the form's values; the service compares against the row.
            stored = Tenant.objects.get(pk=obj.pk)
            services.tenant_update(tenant=stored, **fields, actor=admin_actor(request))
            return
        created = services.tenant_create(
            slug=form.cleaned_data["slug"], **fields, actor=admin_actor(request)
        )
        obj.pk, obj.created_at, obj._state.adding = created.pk, created.created_at, False

    @admin.action(description="Suspend selected tenants (all their keys stop working)")
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_suspend(tenant=tenant, actor=admin_actor(request))
        self.message_user(request, f"Suspended {len(queryset)} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants")
    def reactivate_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_reactivate(tenant=tenant, actor=admin_actor(request))
        self.message_user(request, f"Reactivated {len(queryset)} tenant(s).", messages.SUCCESS)
