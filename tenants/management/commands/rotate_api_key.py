from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from tenants import services
from tenants.audit import Actor
from tenants.durations import format_duration
from tenants.management.commands._base import api_key_by_id, duration_arg, run_service


class Command(BaseCommand):
    help = "Rotate an API key: a new secret (LAST line of output); the old one works for --grace."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")
        parser.add_argument("--grace", default="24h", help="e.g. 24h (default), 0s, 30d (max)")

    def handle(self, *args: Any, key_id: str, grace: str, **options: Any) -> None:
        api_key = api_key_by_id(key_id)
        grace_period = duration_arg(grace)
        now = timezone.now()
        issued = run_service(
            lambda: services.api_key_rotate(
                api_key=api_key, grace=grace_period, actor=Actor.cli(), now=now
            )
        )
        until = (now + grace_period).isoformat()
        self.stdout.write(
            f"rotated key {api_key.public_id}; previous secret works for "
            f"{format_duration(grace_period)} (until {until})"
        )
        self.stdout.write("store this key now; it is not shown again:")
        self.stdout.write(issued.raw_key)
