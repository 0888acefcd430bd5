"""Shapes of the billing API: the usage report query and response, budgets."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from billing.models import Budget
from billing.selectors import GROUP_FIELDS

KEY_ID_PATTERN = r"^[0-9a-z]{12}$"

MAX_RANGE_DAYS = 366


class UsageQuerySerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    group_by = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(GROUP_FIELDS)), required=False, default=list
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] < attrs["start"]:
            raise serializers.ValidationError("end must not be before start")
        if attrs["end"] - attrs["start"] > timedelta(days=MAX_RANGE_DAYS):
            raise serializers.ValidationError(f"at most {MAX_RANGE_DAYS} days per report")
        # Keep the caller's order, drop repeats: it decides the columns and the sort.
        attrs["group_by"] = list(dict.fromkeys(attrs["group_by"]))
        return attrs


def query_data(query_params: Any) -> dict[str, Any]:
    """group_by may be repeated (?group_by=day&group_by=model) or comma-separated."""
    group_by = [
        name.strip()
        for value in query_params.getlist("group_by")
        for name in value.split(",")
        if name.strip()
    ]
    return {
        "start": query_params.get("start"),
        "end": query_params.get("end"),
        "group_by": group_by,
    }


class UsageRowSerializer(serializers.Serializer):
    """One row of the report: the group_by columns first (when asked for), then the totals."""

    day = serializers.DateField(required=False, help_text="with group_by=day")
    model = serializers.CharField(required=False, help_text="served model, with group_by=model")
    key = serializers.CharField(
        required=False, help_text="key public id (deleted:<row id> for a deleted key)"
    )
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="answers with status >= 400")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=30, decimal_places=12, coerce_to_string=True)


class UsageReportSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    group_by = serializers.ListField(child=serializers.ChoiceField(choices=sorted(GROUP_FIELDS)))
    columns = serializers.ListField(child=serializers.CharField(), help_text="CSV column order")
    rows = UsageRowSerializer(many=True)


_SPENT = {"max_digits": 30, "decimal_places": 12, "read_only": True}


class BudgetSerializer(serializers.ModelSerializer):
    """A budget of the tenant or one of its keys, with the current period's spend (read-only)."""

    # spent_usd, period_start and period_end are attributes the view sets on each budget.

    api_key = serializers.CharField(
        source="api_key.public_id",
        read_only=True,
        allow_null=True,
        help_text="The key's public id; null for the tenant-wide budget.",
    )
    spent_usd = serializers.DecimalField(
        **_SPENT, help_text="Spend recorded in the ledger for the current period."
    )
    period_start = serializers.DateTimeField(read_only=True)
    period_end = serializers.DateTimeField(read_only=True, help_text="exclusive")

    class Meta:
        model = Budget
        fields = (
            "id", "api_key", "limit_usd", "period", "soft_limit_pct", "alert_webhook_url",
            "spent_usd", "period_start", "period_end", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("id", "created_at", "updated_at")
        extra_kwargs = {  # noqa: RUF012
            "limit_usd": {"min_value": Decimal(0)},
            "soft_limit_pct": {"min_value": 1, "max_value": 100},
        }


class BudgetCreateSerializer(BudgetSerializer):
    api_key = serializers.RegexField(
        KEY_ID_PATTERN,
        required=False,
        allow_null=True,
        default=None,
        help_text="A key of your tenant by public id; omit or null for the tenant-wide budget.",
    )
