from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from tenants import services
from tenants.audit import Actor
from tenants.management.commands._base import duration_arg, run_service, tenant_by_slug


class Command(BaseCommand):
    help = "Create an API key. The raw key is the LAST line of output, printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--models", default="", help="Comma-separated; empty = tenant's.")
        parser.add_argument("--expires-in", default=None, help="e.g. 30d, 24h, 15m")
        parser.add_argument("--rpm", type=int, default=None)
        parser.add_argument("--tpm", type=int, default=None)
        parser.add_argument("--max-concurrency", type=int, default=None)
        parser.add_argument(
            "--admin", action="store_true", help="A tenant-admin key (management API)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(options["tenant_slug"])
        now = timezone.now()
        expires_in = options["expires_in"]
        expires_at = now + duration_arg(expires_in) if expires_in else None
        models = [name.strip() for name in options["models"].split(",") if name.strip()]
        issued = run_service(
            lambda: services.api_key_create(
                tenant=tenant,
                name=options["name"],
                allowed_models=models,
                expires_at=expires_at,
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                max_concurrency=options["max_concurrency"],
                is_admin=options["admin"],
                actor=Actor.cli(),
                now=now,
            )
        )
        key = issued.api_key
        self.stdout.write(f"created key {key.public_id} ({key.name}) for tenant {tenant.slug}")
        if expires_at:
            self.stdout.write(f"expires at {expires_at.isoformat()}")
        self.stdout.write("store this key now; it is not shown again:")
        self.stdout.write(issued.raw_key)
