"""Field cleaning shared by the services: UNSET, model lists, limits, change sets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from tenants.models import APIKey, Tenant

# Sentinel for "not passed" in update services (None is a meaningful value: unlimited / never).
UNSET: Any = object()

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_concurrency")


def now_or_default(now: datetime | None) -> datetime:
    return now if now is not None else timezone.now()


def clean_models(allowed_models: list[str] | None) -> list[str]:
    if allowed_models is None:
        return []
    if not isinstance(allowed_models, list | tuple) or not all(
        isinstance(name, str) and name.strip() for name in allowed_models
    ):
        raise ValidationError({"allowed_models": "must be a list of model names"})
    return sorted({name.strip() for name in allowed_models})


def clean_limit(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError({field: "must be a positive integer or empty (unlimited)"})
    return value


def apply_changes(obj: Tenant | APIKey, changes: dict[str, Any]) -> dict[str, Any]:
    """Set the passed fields; return {field: new value} for those that actually changed."""
    changed = {}
    for field, value in changes.items():
        if value is UNSET:
            continue
        if field == "allowed_models":
            value = clean_models(value)
        elif field in LIMIT_FIELDS:
            value = clean_limit(field, value)
        if getattr(obj, field) != value:
            setattr(obj, field, value)
            changed[field] = value
    return changed


def jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in changes.items()}
