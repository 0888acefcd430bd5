"""Writes of the billing app: budgets, soft-limit alerts, retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import structlog
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from billing import conf
from billing.consumer import record_from_event
from billing.events import UsageEvent
from billing.models import Budget, UsageRecord
from billing.pricing import PriceBook
from tenants import events

log = structlog.get_logger(__name__)

# Long enough to outlive any period key it de-duplicates except "total", which alerts again
# after this long: acceptable for a soft limit.
_ALERT_DEDUP_TTL_S = 40 * 24 * 3600
_PURGE_CHUNK = 10_000


class BillingError(Exception):
    """A billing request that cannot be carried out; the message says why."""


@transaction.atomic
def budget_set(
    *,
    tenant_id: int,
    api_key_id: int | None,
    limit_usd: Decimal,
    period: str,
    soft_limit_pct: int = 80,
    alert_webhook_url: str | None = None,
) -> Budget:
    """Create or replace the budget of a tenant (api_key_id None) or of one of its keys."""
    if limit_usd < 0:
        raise BillingError("limit_usd must be >= 0")
    if period not in Budget.Period.values:
        raise BillingError(f"period must be one of {', '.join(Budget.Period.values)}")
    if not 1 <= soft_limit_pct <= 100:
        raise BillingError("soft_limit_pct must be between 1 and 100")
    defaults: dict[str, object] = {
        "limit_usd": limit_usd,
        "period": period,
        "soft_limit_pct": soft_limit_pct,
        "updated_at": timezone.now(),
    }
    if alert_webhook_url is not None:
        defaults["alert_webhook_url"] = alert_webhook_url
    budget, _ = Budget.objects.update_or_create(
        tenant_id=tenant_id, api_key_id=api_key_id, defaults=defaults
    )
    # Gateways cache budgets with the key's credentials: tell them to reload (within 1 s).
    events.credentials_changed(tenant_id=tenant_id)
    log.info(
        "budget_set",
        budget_id=budget.pk,
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        limit_usd=str(limit_usd),
        period=period,
    )
    return budget


@transaction.atomic
def budget_delete(*, tenant_id: int, budget_id: int) -> bool:
    """Remove one of the tenant's budgets; False if it has no budget with that id."""
    deleted, _ = Budget.objects.filter(tenant_id=tenant_id, pk=budget_id).delete()
    if not deleted:
        return False
    # The gateway holds the budget with the key's credentials: drop it there too.
    events.credentials_changed(tenant_id=tenant_id)
    log.info("budget_deleted", budget_id=budget_id, tenant_id=tenant_id)
    return True


def budget_soft_limit_alert(*, budget_id: int, period_key: str, spent_usd: Decimal) -> bool:
    """Report that a budget passed its soft limit; once per (budget, period). True if new."""
    budget = Budget.objects.filter(pk=budget_id).first()
    if budget is None:
        return False
    # cache.add is Redis SET NX: of concurrent callers for one period, exactly one proceeds.
    if not cache.add(f"billing:soft-alert:{budget_id}:{period_key}", 1, _ALERT_DEDUP_TTL_S):
        return False
    log.warning(
        "budget_soft_limit_reached",
        budget_id=budget_id,
        tenant_id=budget.tenant_id,
        api_key_id=budget.api_key_id,
        period=budget.period,
        period_key=period_key,
        spent_usd=str(spent_usd),
        limit_usd=str(budget.limit_usd),
        soft_limit_pct=budget.soft_limit_pct,
    )
    if budget.alert_webhook_url:
        from billing.tasks import deliver_budget_webhook  # tasks import services

        deliver_budget_webhook.delay(
            budget_id=budget_id, period_key=period_key, spent_usd=str(spent_usd)
        )
    return True


def budget_webhook_deliver(*, budget_id: int, period_key: str, spent_usd: Decimal) -> None:
    """POST the soft-limit alert to the budget's webhook; raises httpx.HTTPError to retry."""
    budget = Budget.objects.select_related("tenant").filter(pk=budget_id).first()
    if budget is None or not budget.alert_webhook_url:
        return
    payload = {
        "event": "budget_soft_limit_reached",
        "budget_id": budget.pk,
        "tenant": budget.tenant.slug,
        "api_key_id": budget.api_key_id,
        "period": budget.period,
        "period_key": period_key,
        "limit_usd": str(budget.limit_usd),
        "soft_limit_pct": budget.soft_limit_pct,
        "spent_usd": str(spent_usd),
    }
    response = httpx.post(
        budget.alert_webhook_url, json=payload, timeout=conf.budget_webhook_timeout_s()
    )
    response.raise_for_status()
    log.info("budget_webhook_delivered", budget_id=budget_id, status=response.status_code)


def usage_purge_before(*, cutoff: datetime) -> int:
    """Delete ledger rows that started before `cutoff`, in chunks; returns how many."""
    deleted = 0
    while True:
        ids = list(
            UsageRecord.objects.filter(started_at__lt=cutoff).values_list("id", flat=True)[
                :_PURGE_CHUNK
            ]
        )
        if not ids:
            break
        deleted += UsageRecord.objects.filter(id__in=ids).delete()[0]
    log.info("usage_purged", cutoff=cutoff.isoformat(), deleted=deleted)
    return deleted


def usage_purge_expired(*, now: datetime) -> int:
    """Apply AICC_USAGE_RETENTION_DAYS to the raw ledger (rollups are kept)."""
    return usage_purge_before(cutoff=now - timedelta(days=conf.usage_retention_days()))


def usage_record_write(*, event: UsageEvent) -> None:
    """Write one event to the ledger directly, for when the stream cannot take it.

    Idempotent on event_id like the consumer, so a later re-delivery is not counted twice.
    """
    UsageRecord.objects.bulk_create(
        [record_from_event(event, PriceBook.load())], ignore_conflicts=True
    )
