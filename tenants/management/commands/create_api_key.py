from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from billing import services as billing_services
from billing.models import Budget
from tenants import services
from tenants.audit import Actor
from tenants.management.commands._base import (
    duration_arg,
    limit_arg,
    run_service,
    tenant_by_slug,
    usd_arg,
)


class Command(BaseCommand):
    help = "Create an API key. The raw key is the LAST line of output, printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--models", default="", help="Comma-separated; empty = tenant's.")
        parser.add_argument("--expires-in", default=None, help="e.g. 30d, 24h, 15m")
        parser.add_argument("--rpm", type=limit_arg, default=None)
        parser.add_argument("--tpm", type=limit_arg, default=None)
        parser.add_argument("--max-concurrency", type=limit_arg, default=None)
        parser.add_argument(
            "--budget-usd", type=usd_arg, default=None, help="A spending limit for this key."
        )
        parser.add_argument(
            "--budget-period",
            choices=Budget.Period.values,
            default=None,
            help="The budget's period (default monthly); needs --budget-usd.",
        )
        parser.add_argument(
            "--admin", action="store_true", help="A tenant-admin key (management API)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(options["tenant_slug"])
        budget_usd, budget_period = options["budget_usd"], options["budget_period"]
        if budget_period is not None and budget_usd is None:
            raise CommandError("--budget-period needs --budget-usd")
        now = timezone.now()
        expires_in = options["expires_in"]
        expires_at = now + duration_arg(expires_in) if expires_in else None
        models = [name.strip() for name in options["models"].split(",") if name.strip()]
        # One transaction: a key whose budget could not be set is not left behind without it.
        with transaction.atomic():
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
            budget = None
            if budget_usd is not None:
                try:
                    budget = billing_services.budget_set(
                        tenant_id=tenant.pk,
                        api_key_id=issued.api_key.pk,
                        limit_usd=budget_usd,
                        period=budget_period or Budget.Period.MONTHLY,
                    )
                except billing_services.BillingError as error:
                    raise CommandError(str(error)) from None
        key = issued.api_key
        self.stdout.write(f"created key {key.public_id} ({key.name}) for tenant {tenant.slug}")
        if expires_at:
            self.stdout.write(f"expires at {expires_at.isoformat()}")
        if budget is not None:
            self.stdout.write(f"budget {budget.pk}: {budget.limit_usd} USD {budget.period}")
        self.stdout.write("store this key now; it is not shown again:")
        self.stdout.write(issued.raw_key)
