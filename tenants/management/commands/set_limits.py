"""set_limits <key-id|tenant-slug> [--rpm N|none] [--tpm N|none] [--max-concurrency N|none]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import services
from tenants.audit import Actor
from tenants.management.commands._base import key_or_tenant, limit_arg, run_service
from tenants.models import APIKey, Tenant

# option dest -> model field
_LIMITS = {"rpm": "rpm_limit", "tpm": "tpm_limit", "max_concurrency": "max_concurrency"}


def _shown(value: int | None) -> str:
    return "none" if value is None else str(value)


class Command(BaseCommand):
    help = (
        "Change the rate limits of an API key (by key id) or a whole tenant (by slug); 'none' "
        "removes a limit, options left out keep their value. Gateways apply it within a second."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", help="an API key's public id, or a tenant slug")
        # UNSET, not None, when left out: None is the parsed `none` (unlimited).
        for flag, meaning in (
            ("--rpm", "requests per minute"),
            ("--tpm", "tokens per minute"),
            ("--max-concurrency", "requests in flight"),
        ):
            parser.add_argument(
                flag, type=limit_arg, default=services.UNSET, help=f"{meaning}, or none"
            )

    def handle(self, *args: Any, target: str, **options: Any) -> None:
        changes = {
            field: options[dest]
            for dest, field in _LIMITS.items()
            if options[dest] is not services.UNSET
        }
        if not changes:
            raise CommandError("nothing to change: pass --rpm, --tpm and/or --max-concurrency")
        found = key_or_tenant(target)
        row: APIKey | Tenant
        if found.api_key is not None:
            api_key = found.api_key
            row = run_service(
                lambda: services.api_key_update(api_key=api_key, **changes, actor=Actor.cli())
            )
        else:
            tenant = found.tenant
            row = run_service(
                lambda: services.tenant_update(tenant=tenant, **changes, actor=Actor.cli())
            )
        shown = ", ".join(f"{field}={_shown(getattr(row, field))}" for field in _LIMITS.values())
        self.stdout.write(f"limits of {found.label}: {shown}")
