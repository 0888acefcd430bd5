"""The audit log in the admin: read-only, newest first, scoped like everything else."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from tenants.admin.scoping import TenantScopedAdmin
from tenants.models import AuditEntry

# A fixed list: a DISTINCT over a large audit table to build the filter would be a full scan.
ACTIONS = (
    "tenant.create", "tenant.update", "tenant.suspend", "tenant.reactivate",
    "membership.add", "membership.set_role", "membership.remove",
    "api_key.create", "api_key.update", "api_key.rotate", "api_key.revoke", "api_key.set_expiry",
)  # fmt: skip


class ActionFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(action, action) for action in ACTIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> Any:
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(TenantScopedAdmin):
    is_managed_by_tenant_admins = False
    list_display = ("created_at", "tenant", "action", "actor", "actor_key_id", "target")
    list_select_related = ("tenant", "actor")
    list_filter = (ActionFilter,)
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    list_per_page = 100
    fields = ("created_at", "tenant", "action", "actor", "actor_key_id", "target", "pretty_details")
    readonly_fields = fields

    @admin.display(description="target")
    def target(self, entry: AuditEntry) -> str:
        return f"{entry.target_type}:{entry.target_id}"

    @admin.display(description="details")
    def pretty_details(self, entry: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.details, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
