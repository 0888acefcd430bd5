"""Shared bits of the tenants and billing commands: lookups that fail with a clear CommandError."""

from __future__ import annotations

import re
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenants.durations import parse_duration
from tenants.models import APIKey, Tenant

T = TypeVar("T")

# A key id as operators paste it: the bare public id, `aicc_<id>`, a hint or a whole key.
_KEY_ID_RE = re.compile(r"^(?:aicc_)?(?P<key_id>[0-9a-z]{12})(?:_.*)?$")


@dataclass(frozen=True)
class KeyOrTenant:
    """What a `<key-id|tenant-slug>` argument named: a key (and its tenant) or a whole tenant."""

    tenant: Tenant
    api_key: APIKey | None

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"key {self.api_key.public_id}"
        return f"tenant {self.tenant.slug}"


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


def key_or_tenant(target: str) -> KeyOrTenant:
    """A key by public id (`abc123def456`, `aicc_abc123def456`) if one exists, else a tenant.

    Keys first: a tenant slug that happens to look like a key id is still found when no key has
    that id (ids are 12 random base36 characters, so a collision is not a practical concern).
    """
    if match := _KEY_ID_RE.match(target):
        api_key = APIKey.objects.select_related("tenant").filter(public_id=match["key_id"]).first()
        if api_key is not None:
            return KeyOrTenant(tenant=api_key.tenant, api_key=api_key)
    tenant = Tenant.objects.filter(slug=target).first()
    if tenant is None:
        raise CommandError(f"no API key id or tenant slug {target!r}")
    return KeyOrTenant(tenant=tenant, api_key=None)


def duration_arg(text: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise CommandError(str(error)) from None


def limit_arg(text: str) -> int | None:
    """A rate or concurrency limit: a positive integer, or `none` for unlimited."""
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}")
    return value


def usd_arg(text: str) -> Decimal:
    """An amount of USD, exact (never through a float), zero or more."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ArgumentTypeError(f"expected an amount of USD (0 or more), got {text!r}")
    return value


def run_service(call: Callable[[], T]) -> T:
    try:
        return call()
    except ValidationError as error:
        raise CommandError("; ".join(error.messages)) from None
