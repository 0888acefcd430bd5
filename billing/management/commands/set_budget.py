"""set_budget <key-id|tenant-slug> --limit-usd X [--period monthly] [--soft-pct 80] [--webhook URL]
set_budget <key-id|tenant-slug> --remove"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import services
from billing.models import Budget
from tenants.management.commands._base import key_or_tenant, usd_arg


class Command(BaseCommand):
    help = (
        "Create or replace the budget of an API key (by key id) or a whole tenant (by slug), or "
        "remove it with --remove. Gateways apply it within a second."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", help="an API key's public id, or a tenant slug")
        parser.add_argument("--limit-usd", type=usd_arg, default=None)
        parser.add_argument("--period", choices=Budget.Period.values, default="monthly")
        parser.add_argument("--soft-pct", type=int, default=80)
        parser.add_argument("--webhook", default=None, help="URL for the soft-limit alert")
        parser.add_argument("--remove", action="store_true", help="remove the budget instead")

    def handle(self, *args: Any, **options: Any) -> None:
        found = key_or_tenant(options["target"])
        api_key_id = found.api_key.pk if found.api_key is not None else None
        if options["remove"]:
            self._remove(found.tenant.pk, api_key_id, found.label)
            return
        if options["limit_usd"] is None:
            raise CommandError("pass --limit-usd (or --remove)")
        try:
            budget = services.budget_set(
                tenant_id=found.tenant.pk,
                api_key_id=api_key_id,
                limit_usd=options["limit_usd"],
                period=options["period"],
                soft_limit_pct=options["soft_pct"],
                alert_webhook_url=options["webhook"],
            )
        except services.BillingError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"budget {budget.pk}: {found.label} {budget.limit_usd} USD {budget.period}, "
            f"soft limit {budget.soft_limit_pct}%"
        )

    def _remove(self, tenant_id: int, api_key_id: int | None, label: str) -> None:
        budget = Budget.objects.filter(tenant_id=tenant_id, api_key_id=api_key_id).first()
        if budget is None or not services.budget_delete(tenant_id=tenant_id, budget_id=budget.pk):
            raise CommandError(f"{label} has no budget")
        self.stdout.write(f"removed budget {budget.pk} of {label}")
