from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from tenants import selectors
from tenants.management.commands._base import tenant_by_slug
from tenants.models import APIKey

_COLUMNS = "{:<12}  {:<20}  {:<8}  {:<26}  {:<20}  {:<20}  {}"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


class Command(BaseCommand):
    help = "List API keys (all tenants, or one), newest first. Secrets are never shown."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug", nargs="?")

    def handle(self, *args: Any, tenant_slug: str | None, **options: Any) -> None:
        if tenant_slug:
            queryset: QuerySet[APIKey] = selectors.api_key_list(tenant=tenant_by_slug(tenant_slug))
        else:
            queryset = selectors.annotate_active_hint(
                APIKey.objects.select_related("tenant")
            ).order_by("-id")
        now = timezone.now()
        self.stdout.write(
            _COLUMNS.format(
                "KEY ID", "TENANT", "STATE", "ACTIVE SECRET", "LAST USED", "EXPIRES", "NAME"
            )
        )
        # Streamed in chunks so listing 100k keys holds a bounded number in memory.
        for key in queryset.iterator(chunk_size=2000):
            self.stdout.write(
                _COLUMNS.format(
                    key.public_id, key.tenant.slug[:20], key.state(now), key.active_hint or "-",
                    _when(key.last_used_at), _when(key.expires_at), key.name,
                )
            )  # fmt: skip
