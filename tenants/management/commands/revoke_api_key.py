from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants import services
from tenants.audit import Actor
from tenants.management.commands._base import api_key_by_id, run_service


class Command(BaseCommand):
    help = "Revoke an API key now: every secret stops working."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")

    def handle(self, *args: Any, key_id: str, **options: Any) -> None:
        api_key = api_key_by_id(key_id)
        revoked = run_service(lambda: services.api_key_revoke(api_key=api_key, actor=Actor.cli()))
        self.stdout.write(
            f"revoked key {revoked.public_id} at {revoked.revoked_at:%Y-%m-%d %H:%M:%S%z}"
        )
