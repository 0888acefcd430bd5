"""Rebuild the current period's budget counters in Redis from the ledger.

The gateway does this by itself for a counter it finds missing (Redis restarted or flushed, a
new period); this command does it for every budget at once, e.g. after restoring Redis from an
old snapshot (`--overwrite`, which replaces counters that exist: run it while traffic is quiet,
since charges settled during the run may be overwritten by the ledger's slightly older sum).
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from redis.asyncio import Redis

from billing.selectors import BudgetConfig, budget_config_list
from gateway.budgets import BudgetReservations
from gateway.recovery import budget_counter_rebuild, budget_from_config


class Command(BaseCommand):
    help = "Rebuild budget counters of the current period from the usage ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant's budgets (slug).")
        parser.add_argument(
            "--overwrite", action="store_true", help="Replace counters that exist too."
        )

    def handle(self, *args: object, **options: object) -> None:
        configs = budget_config_list(tenant_slug=options["tenant"])  # type: ignore[arg-type]
        written = asyncio.run(self._rebuild(configs, overwrite=bool(options["overwrite"])))
        self.stdout.write(f"{written} of {len(configs)} budget counters written.")

    async def _rebuild(self, configs: list[BudgetConfig], *, overwrite: bool) -> int:
        redis = Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_S)
        reservations = BudgetReservations(redis, timeout_s=settings.REDIS_TIMEOUT_S)
        try:
            written = 0
            for config in configs:
                written += await budget_counter_rebuild(
                    reservations, budget_from_config(config), config, overwrite=overwrite
                )
            return written
        finally:
            await redis.aclose()
