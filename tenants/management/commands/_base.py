"""Shared bits of the tenants commands: lookups that fail with a clear CommandError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenants.durations import parse_duration
from tenants.models import APIKey, Tenant

T = TypeVar("T")


def tenant_by_slug(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"no tenant with slug {slug!r}")
    return tenant


def api_key_by_id(key_id: str) -> APIKey:
    """By public id; `aicc_<id>` (a hint or the start of a key) is accepted too."""
    public_id = key_id.removeprefix("aicc_")[:12]
    api_key = APIKey.objects.select_related("tenant").filter(public_id=public_id).first()
    if api_key is None:
        raise CommandError(f"no API key with id {public_id!r}")
    return api_key


def duration_arg(text: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise CommandError(str(error)) from None


def run_service(call: Callable[[], T]) -> T:
    try:
        return call()
    except ValidationError as error:
        raise CommandError("; ".join(error.messages)) from None
