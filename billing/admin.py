"""Admin: prices and budgets are edited here; the ledger and rollups are read-only.

Budgets are scoped like the tenants admin: a tenant's owners and admins see and change only their
tenant's budgets, with tenant and key choices limited to it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest
from django.utils import timezone

from billing import selectors, services
from billing.models import Budget, ModelPrice, UsageRecord, UsageRollup
from tenants.admin.scoping import TenantScopedAdmin, managed_tenant_ids
from tenants.models import APIKey


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False  # a COUNT(*) over the ledger per page view is too slow

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "effective_from",
        "input_usd_per_1m",
        "cached_input_usd_per_1m",
        "output_usd_per_1m",
        "per_request_usd",
        "note",
    )
    list_filter = ("model",)
    search_fields = ("model",)
    ordering = ("model", "-effective_from")


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    # Only the record's own columns: ids are plain integers, so no join and no N+1.
    list_display = (
        "started_at",
        "tenant_id",
        "api_key_id",
        "served_model",
        "endpoint",
        "status_code",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "cost_discrepancy",
        "latency_ms",
        "is_cache_hit",
    )
    list_filter = ("cost_discrepancy", "is_cache_hit", "is_streamed", "endpoint")
    search_fields = ("=event_id", "=correlation_id", "=served_model")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "bucket_start",
        "granularity",
        "tenant_id",
        "api_key_id",
        "model",
        "requests",
        "errors",
        "cost_usd",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
    )
    list_filter = ("granularity",)
    search_fields = ("=model",)
    date_hierarchy = "bucket_start"
    ordering = ("-bucket_start",)


class BudgetForm(forms.ModelForm):
    alert_webhook_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Alert webhook URL"
    )

    class Meta:
        model = Budget
        fields = (
            "tenant", "api_key", "limit_usd", "period", "soft_limit_pct", "alert_webhook_url",
        )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant, api_key = data.get("tenant") or self._stored("tenant"), data.get("api_key")
        if tenant is not None and api_key is not None and api_key.tenant_id != tenant.pk:
            raise ValidationError({"api_key": "This key belongs to another tenant."})
        return data

    def _stored(self, field: str) -> Any:
        return getattr(self.instance, field) if self.instance.pk else None


@admin.register(Budget)
class BudgetAdmin(TenantScopedAdmin):
    """Budgets of the tenants the user owns or administers; written through billing.services so
    gateways reload them within a second. Scope (tenant, key) is fixed once created."""

    form = BudgetForm
    list_display = ("tenant", "api_key", "limit_usd", "period", "soft_limit_pct", "updated_at")
    list_select_related = ("tenant", "api_key")
    list_filter = ("period",)
    search_fields = ("tenant__slug", "api_key__public_id")
    # A select would list every key; the raw id lookup opens the (scoped) key changelist.
    raw_id_fields = ("api_key",)
    ordering = ("tenant__slug", "-id")
    clock: Callable[[], datetime] = staticmethod(timezone.now)

    def get_readonly_fields(self, request: HttpRequest, obj: Budget | None = None) -> Any:
        if obj is None:
            return ()
        return ("tenant", "api_key", "spent_this_period", "created_at", "updated_at")

    @admin.display(description="spent this period (USD)")
    def spent_this_period(self, budget: Budget) -> str:
        start, end = budget.bounds(self.clock())
        spent = selectors.spent_in_period(
            tenant_id=budget.tenant_id,
            api_key_id=budget.api_key_id,
            period_start=start,
            period_end=end,
        )
        return f"{spent} (from {start:%Y-%m-%d %H:%M} UTC)"

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.related_model is APIKey:
            tenant_ids = managed_tenant_ids(request)
            if tenant_ids is not None:
                kwargs["queryset"] = APIKey.objects.filter(tenant_id__in=tenant_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Budget | None = None) -> bool:
        # Unlike keys and tenants, a budget is configuration: removing it leaves no history gap.
        return self.has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        data = form.cleaned_data
        tenant_id = obj.tenant_id if change else data["tenant"].pk
        api_key_id = obj.api_key_id if change else (data["api_key"].pk if data["api_key"] else None)
        # The form already checked what budget_set checks (choices and the model's constraints).
        budget = services.budget_set(
            tenant_id=tenant_id,
            api_key_id=api_key_id,
            limit_usd=data["limit_usd"],
            period=data["period"],
            soft_limit_pct=data["soft_limit_pct"],
            alert_webhook_url=data["alert_webhook_url"],
        )
        obj.pk, obj.created_at, obj.updated_at = budget.pk, budget.created_at, budget.updated_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.budget_delete(tenant_id=obj.tenant_id, budget_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for tenant_id, budget_id in queryset.values_list("tenant_id", "pk"):
            services.budget_delete(tenant_id=tenant_id, budget_id=budget_id)
