"""Admin: prices and budgets are edited here; the ledger and rollups are read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from billing.models import Budget, ModelPrice, UsageRecord, UsageRollup


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


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("tenant", "api_key", "limit_usd", "period", "soft_limit_pct", "updated_at")
    list_select_related = ("tenant", "api_key")
    list_filter = ("period",)
    search_fields = ("tenant__slug", "api_key__public_id")
    raw_id_fields = ("tenant", "api_key")
