"""Celery tasks of the billing app: plain arguments in, one service call each."""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

import httpx
import redis
import structlog
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from billing import conf, rollups, services
from billing.consumer import UsageConsumer

log = structlog.get_logger(__name__)
DRAIN_LOCK = "aicc:usage:drain-lock"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(ignore_result=True)
def drain_usage_events(budget_s: float | None = None) -> dict[str, int]:
    """Move usage events from the stream to the ledger until it is empty or time is up.

    The lock only saves work when beat fires while a run is still going; correctness comes
    from the consumer group and the unique event_id, so a lost or expired lock is harmless.
    """
    budget_s = conf.usage_drain_budget_s() if budget_s is None else budget_s
    client = _redis()
    try:
        lock = client.lock(DRAIN_LOCK, timeout=budget_s + 10, blocking=False)
        if not lock.acquire():
            return {"skipped": 1}
        try:
            result = UsageConsumer(client).drain(budget_s=budget_s)
        finally:
            # Expired and maybe taken by another run: nothing of ours to release.
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
        if result.entries:
            log.info("usage_drained", **vars(result))
        return vars(result)
    finally:
        client.close()


@shared_task(ignore_result=True)
def rollup_hours(hours_back: int = 2, now_iso: str | None = None) -> int:
    now = datetime.fromisoformat(now_iso) if now_iso else timezone.now()
    return rollups.rollup_recent(granularity=rollups.HOUR, buckets_back=hours_back, now=now)


@shared_task(ignore_result=True)
def rollup_days(days_back: int = 1, now_iso: str | None = None) -> int:
    now = datetime.fromisoformat(now_iso) if now_iso else timezone.now()
    return rollups.rollup_recent(granularity=rollups.DAY, buckets_back=days_back, now=now)


@shared_task(ignore_result=True)
def purge_old_usage() -> int:
    return services.usage_purge_expired(now=timezone.now())


@shared_task(
    ignore_result=True,
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def deliver_budget_webhook(*, budget_id: int, period_key: str, spent_usd: str) -> None:
    services.budget_webhook_deliver(
        budget_id=budget_id, period_key=period_key, spent_usd=Decimal(spent_usd)
    )
