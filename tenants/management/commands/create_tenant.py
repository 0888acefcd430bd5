from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants import services
from tenants.audit import Actor
from tenants.management.commands._base import run_service


class Command(BaseCommand):
    help = "Create a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="Display name (default: the slug).")

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        tenant = run_service(
            lambda: services.tenant_create(slug=slug, name=name, actor=Actor.cli())
        )
        self.stdout.write(f"created tenant {tenant.slug} (id {tenant.pk})")
