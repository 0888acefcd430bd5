"""Reads for the hot path and the reports. Each takes the tenant first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from billing.models import Budget, UsageRecord


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    budget_id: int
    tenant_id: int
    api_key_id: int | None  # None: tenant-wide
    limit_usd: Decimal
    period: str
    soft_limit_pct: int
    has_alert_webhook: bool

    @property
    def soft_limit_usd(self) -> Decimal:
        return self.limit_usd * self.soft_limit_pct / 100


def _budget_queryset(*, tenant_id: int, api_key_id: int | None) -> QuerySet[Budget]:
    scope = Q(api_key__isnull=True)
    if api_key_id is not None:
        scope |= Q(api_key_id=api_key_id)
    return Budget.objects.filter(scope, tenant_id=tenant_id).order_by("id")


def _config(budget: Budget) -> BudgetConfig:
    return BudgetConfig(
        budget_id=budget.pk,
        tenant_id=budget.tenant_id,
        api_key_id=budget.api_key_id,
        limit_usd=budget.limit_usd,
        period=budget.period,
        soft_limit_pct=budget.soft_limit_pct,
        has_alert_webhook=bool(budget.alert_webhook_url),
    )


def budget_configs_for(*, tenant_id: int, api_key_id: int | None) -> list[BudgetConfig]:
    """The budgets a request by this key counts against: the tenant-wide one and the key's."""
    return [
        _config(budget) for budget in _budget_queryset(tenant_id=tenant_id, api_key_id=api_key_id)
    ]


def budget_config_list(*, tenant_slug: str | None = None) -> list[BudgetConfig]:
    """Every configured budget (of one tenant when given): for rebuilding counters."""
    budgets = Budget.objects.order_by("id")
    if tenant_slug is not None:
        budgets = budgets.filter(tenant__slug=tenant_slug)
    return [_config(budget) for budget in budgets.iterator()]


async def abudget_configs_for(*, tenant_id: int, api_key_id: int | None) -> list[BudgetConfig]:
    return [
        _config(budget)
        async for budget in _budget_queryset(tenant_id=tenant_id, api_key_id=api_key_id)
    ]


def spent_in_period(
    *, tenant_id: int, api_key_id: int | None, period_start: datetime, period_end: datetime
) -> Decimal:
    """Ledger spend in [period_start, period_end); api_key_id None: the whole tenant."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, started_at__gte=period_start, started_at__lt=period_end
    )
    if api_key_id is not None:
        records = records.filter(api_key_id=api_key_id)
    if connection.vendor == "postgresql":  # NUMERIC sums are exact there
        return records.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    # SQLite sums through floats; add the Decimals here instead.
    return sum(records.values_list("cost_usd", flat=True).iterator(), Decimal(0))


GROUP_FIELDS = {"day": "day", "model": "served_model", "key": "api_key_id"}
REPORT_COLUMNS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
)


def usage_report(
    *, tenant_id: int, start: date, end: date, group_by: list[str]
) -> list[dict[str, object]]:
    """Usage totals per group for [start, end] (whole UTC days, both inclusive)."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, started_at__date__gte=start, started_at__date__lte=end
    ).annotate(day=TruncDate("started_at"))
    columns = [GROUP_FIELDS[name] for name in group_by]
    totals = {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status_code__gte=400)),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "cost_usd": Sum("cost_usd"),
    }
    if columns:
        rows = list(records.values(*columns).annotate(**totals).order_by(*columns))
    else:
        rows = [records.aggregate(**totals)]
    if connection.vendor != "postgresql":
        _exact_costs(records, columns, rows)
    report = []
    for row in rows:
        item: dict[str, object] = {name: row[GROUP_FIELDS[name]] for name in group_by}
        item.update({column: row[column] or 0 for column in REPORT_COLUMNS})
        report.append(item)
    return report


def _exact_costs(records: QuerySet[UsageRecord], columns: list[str], rows: list[dict]) -> None:
    """Replace SQLite's float SUM of costs by exact Decimal sums (laptop databases only)."""
    sums: dict[tuple[object, ...], Decimal] = {}
    for *group, cost in records.values_list(*columns, "cost_usd").iterator():
        sums[tuple(group)] = sums.get(tuple(group), Decimal(0)) + cost
    for row in rows:
        row["cost_usd"] = sums.get(tuple(row[column] for column in columns), Decimal(0))
