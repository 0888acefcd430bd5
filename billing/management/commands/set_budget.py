"""set_budget <key-id|tenant-slug> --limit-usd X --period monthly [--soft-pct 80] [--webhook URL]"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import services
from billing.models import Budget
from tenants.models import APIKey, Tenant


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise CommandError(f"--limit-usd must be a decimal number, got {value!r}") from None


class Command(BaseCommand):
    help = "Create or replace the budget of an API key (by key id) or a whole tenant (by slug)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", help="an API key's public id, or a tenant slug")
        parser.add_argument("--limit-usd", required=True, type=_decimal)
        parser.add_argument("--period", choices=Budget.Period.values, default="monthly")
        parser.add_argument("--soft-pct", type=int, default=80)
        parser.add_argument("--webhook", default=None, help="URL for the soft-limit alert")

    def handle(self, *args: Any, **options: Any) -> None:
        target = options["target"]
        api_key = APIKey.objects.filter(public_id=target).first()
        if api_key is not None:
            tenant_id, api_key_id, label = api_key.tenant_id, api_key.pk, f"key {target}"
        else:
            tenant = Tenant.objects.filter(slug=target).first()
            if tenant is None:
                raise CommandError(f"no API key id or tenant slug {target!r}")
            tenant_id, api_key_id, label = tenant.pk, None, f"tenant {target}"
        try:
            budget = services.budget_set(
                tenant_id=tenant_id,
                api_key_id=api_key_id,
                limit_usd=options["limit_usd"],
                period=options["period"],
                soft_limit_pct=options["soft_pct"],
                alert_webhook_url=options["webhook"],
            )
        except services.BillingError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"budget {budget.pk}: {label} {budget.limit_usd} USD {budget.period}, "
            f"soft limit {budget.soft_limit_pct}%"
        )
