from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import Client

from billing import tasks
from billing.events import usage_event_append_sync
from billing.models import ModelPrice, UsageRecord, UsageRollup
from tests.billing.conftest import T0, MakeEvent

pytestmark = pytest.mark.django_db


def test_drain_task_moves_the_stream_into_the_ledger(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    for _ in range(3):
        usage_event_append_sync(redis_client, make_event())
    assert tasks.drain_usage_events(budget_s=5)["inserted"] == 3
    assert UsageRecord.objects.count() == 3


def test_drain_task_skips_while_another_run_holds_the_lock(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    usage_event_append_sync(redis_client, make_event())
    redis_client.set(tasks.DRAIN_LOCK, "another-run", ex=30)
    assert tasks.drain_usage_events(budget_s=5) == {"skipped": 1}
    assert UsageRecord.objects.count() == 0


def test_rollup_and_purge_tasks_run_their_services(
    make_event: MakeEvent, test_prices: list[ModelPrice], settings
) -> None:
    UsageRecord.objects.create(
        event_id="e1",
        tenant_id=1,
        api_key_id=1,
        requested_model="m",
        served_model="m",
        endpoint="chat.completions",
        cost_usd=Decimal("0.5"),
        latency_ms=10,
        status_code=200,
        started_at=T0,
        finished_at=T0,
    )
    assert tasks.rollup_hours(hours_back=1, now_iso=(T0 + timedelta(minutes=70)).isoformat()) == 1
    assert tasks.rollup_days(days_back=0, now_iso=T0.isoformat()) == 1
    assert UsageRollup.objects.count() == 2
    settings.AICC_USAGE_RETENTION_DAYS = 1
    assert tasks.purge_old_usage() == 1  # T0 is long before "now" minus one day


def test_admin_lists_the_ledger_read_only_without_a_query_per_row(
    make_event: MakeEvent, django_assert_max_num_queries: object
) -> None:
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                event_id=f"e{n}",
                tenant_id=1,
                api_key_id=n,
                requested_model="m",
                served_model="m",
                endpoint="chat.completions",
                cost_usd=Decimal("0.1"),
                latency_ms=10,
                status_code=200,
                started_at=T0,
                finished_at=T0,
            )
            for n in range(30)
        ]
    )
    admin = get_user_model().objects.create_superuser(username="root", password=None)
    client = Client()
    client.force_login(admin)

    with django_assert_max_num_queries(12):  # type: ignore[operator]
        response = client.get("/admin/billing/usagerecord/")
    assert response.status_code == 200
    assert client.get("/admin/billing/usagerecord/add/").status_code == 403
    assert client.get("/admin/billing/usagerollup/").status_code == 200
    assert client.get("/admin/billing/modelprice/add/").status_code == 200
    assert client.get("/admin/billing/budget/").status_code == 200
