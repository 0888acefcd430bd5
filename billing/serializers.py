"""Query validation for the usage report."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rest_framework import serializers

from billing.selectors import GROUP_FIELDS

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
