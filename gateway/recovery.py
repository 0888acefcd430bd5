"""What the hot path does when Redis has lost state or cannot take an event.

- A budget counter that is missing (Redis flushed or restarted, or a new period began) is
  rebuilt from the ledger before the reservation is retried; never read as zero.
- A usage event the stream cannot take is written to the ledger directly (idempotent on its
  event id), so usage is never lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import structlog
from asgiref.sync import sync_to_async

from billing.events import UsageEvent
from billing.periods import period_bounds
from billing.selectors import BudgetConfig, spent_in_period
from billing.services import usage_record_write
from gateway.budgets import Budget, BudgetReservations
from gateway.limits import Scope

log = structlog.get_logger(__name__)


def budget_from_config(config: BudgetConfig) -> Budget:
    """The Redis counter's view of a configured budget (owner: the tenant's or the key's id)."""
    is_tenant_wide = config.api_key_id is None
    return Budget(
        scope=Scope.TENANT if is_tenant_wide else Scope.KEY,
        owner_id=str(config.tenant_id if is_tenant_wide else config.api_key_id),
        limit_usd=config.limit_usd,
        period=config.period,
        soft_limit_pct=Decimal(config.soft_limit_pct),
    )


def ledger_spent(config: BudgetConfig, now: datetime) -> Decimal:
    start, end = period_bounds(config.period, now)
    return spent_in_period(
        tenant_id=config.tenant_id,
        api_key_id=config.api_key_id,
        period_start=start,
        period_end=end,
    )


async def budget_counter_rebuild(
    reservations: BudgetReservations,
    budget: Budget,
    config: BudgetConfig,
    *,
    overwrite: bool = False,
) -> bool:
    """Set the current period's counter from the ledger; without `overwrite` only if missing."""
    now = datetime.now(UTC)
    spent = await sync_to_async(ledger_spent, thread_sensitive=False)(config, now)
    is_written = await reservations.restore_spent(budget, spent, overwrite=overwrite, now=now)
    if is_written:
        log.info(
            "budget_counter_rebuilt",
            budget_id=config.budget_id,
            period=config.period,
            spent_usd=str(spent),
        )
    return is_written


async def usage_event_write_direct(event: UsageEvent) -> None:
    await sync_to_async(usage_record_write, thread_sensitive=False)(event=event)
    log.warning("usage_event_written_directly", event_id=event.event_id)
