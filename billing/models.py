"""Prices, the usage ledger, its rollups and budget configuration.

The ledger (`UsageRecord`) and rollups keep tenant / key / secret ids as plain indexed integers,
not foreign keys: history must survive the deletion of a key or tenant, and the hot insert path
should not pay for constraint checks or row locks on the tenants tables. `Budget` is
configuration, not history, so it does use foreign keys (deleting a key deletes its budget).

Money is Decimal everywhere. Prices are USD per 1M tokens with 6 decimal places, so a cost
(tokens x price / 1e6) needs 12 decimal places to be exact: costs are never rounded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import models
from django.utils import timezone

from billing import periods

PRICE_FIELD = {"max_digits": 18, "decimal_places": 6}
COST_FIELD = {"max_digits": 24, "decimal_places": 12}


class ModelPrice(models.Model):
    """A model's list price from `effective_from` until the next row for the same model.

    Past costs never change: to change a price, add a row with a later `effective_from`.
    """

    model = models.CharField(max_length=200)
    input_usd_per_1m = models.DecimalField(**PRICE_FIELD)
    output_usd_per_1m = models.DecimalField(**PRICE_FIELD)
    # Null: cached input tokens cost the same as other input tokens.
    cached_input_usd_per_1m = models.DecimalField(**PRICE_FIELD, null=True, blank=True)
    per_request_usd = models.DecimalField(**PRICE_FIELD, default=Decimal("0"))
    effective_from = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["model", "effective_from"], name="uniq_price_from"),
        )
        ordering = ("model", "-effective_from")

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class UsageRecord(models.Model):
    """One metered request. Written only by the usage consumer; never updated."""

    event_id = models.CharField(max_length=64, unique=True)
    tenant_id = models.BigIntegerField()
    api_key_id = models.BigIntegerField()
    secret_id = models.BigIntegerField(null=True, blank=True)
    requested_model = models.CharField(max_length=200)
    served_model = models.CharField(max_length=200)
    route_reason = models.CharField(max_length=64, blank=True)
    endpoint = models.CharField(max_length=64)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(**COST_FIELD)
    upstream_cost_usd = models.DecimalField(**COST_FIELD, null=True, blank=True)
    cost_discrepancy = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField()
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField()
    is_cache_hit = models.BooleanField(default=False)
    is_streamed = models.BooleanField(default=False)
    correlation_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        indexes = (
            models.Index(fields=["tenant_id", "started_at"], name="usage_tenant_started"),
            models.Index(fields=["api_key_id", "started_at"], name="usage_key_started"),
            # Retention purges and rollups scan by time alone.
            models.Index(fields=["started_at"], name="usage_started"),
        )

    def __str__(self) -> str:
        return self.event_id


class UsageRollup(models.Model):
    """Totals of the ledger for one (bucket, tenant, key, served model); recomputable."""

    class Granularity(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    tenant_id = models.BigIntegerField()
    api_key_id = models.BigIntegerField()
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(**COST_FIELD, default=Decimal("0"))
    cache_hits = models.PositiveIntegerField(default=0)
    latency_p50_ms = models.PositiveIntegerField(default=0)
    latency_p95_ms = models.PositiveIntegerField(default=0)
    latency_p99_ms = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["granularity", "bucket_start", "tenant_id", "api_key_id", "model"],
                name="uniq_rollup_bucket",
            ),
        )
        indexes = (
            models.Index(fields=["tenant_id", "granularity", "bucket_start"], name="rollup_tenant"),
        )

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket_start:%Y-%m-%d %H:%M} {self.model}"


class Budget(models.Model):
    """A spending limit for a tenant (api_key null: tenant-wide) or one of its keys."""

    class Period(models.TextChoices):
        DAILY = periods.DAILY
        WEEKLY = periods.WEEKLY
        MONTHLY = periods.MONTHLY
        TOTAL = periods.TOTAL

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="budgets")
    api_key = models.ForeignKey(
        "tenants.APIKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    limit_usd = models.DecimalField(max_digits=18, decimal_places=6)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTHLY)
    soft_limit_pct = models.PositiveSmallIntegerField(default=80)
    alert_webhook_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            # Two constraints because NULLs are distinct in a plain unique constraint.
            models.UniqueConstraint(
                fields=["tenant", "api_key"],
                condition=models.Q(api_key__isnull=False),
                name="uniq_budget_key",
            ),
            models.UniqueConstraint(
                fields=["tenant"],
                condition=models.Q(api_key__isnull=True),
                name="uniq_budget_tenant",
            ),
            models.CheckConstraint(
                condition=models.Q(soft_limit_pct__gte=1, soft_limit_pct__lte=100),
                name="budget_soft_pct_range",
            ),
            models.CheckConstraint(
                condition=models.Q(limit_usd__gte=0), name="budget_limit_nonneg"
            ),
        )

    def __str__(self) -> str:
        scope = f"key {self.api_key_id}" if self.api_key_id else "tenant-wide"
        return f"{self.tenant_id} {scope}: {self.limit_usd} USD {self.period}"

    @property
    def soft_limit_usd(self) -> Decimal:
        return self.limit_usd * self.soft_limit_pct / 100

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        return periods.period_bounds(self.period, now)
