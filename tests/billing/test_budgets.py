from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
import redis
import structlog.testing
from django.core.management import CommandError, call_command
from django.db import connections

from aicc_site.celery import app as celery_app
from billing import periods, services
from billing.models import Budget, UsageRecord
from billing.selectors import BudgetConfig, budget_configs_for, spent_in_period
from tenants.models import APIKey, Tenant
from tests.billing.conftest import T0

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("period", "now", "start", "end", "key"),
    [
        (
            "daily",
            datetime(2026, 3, 2, 23, 59, tzinfo=UTC),
            datetime(2026, 3, 2, tzinfo=UTC),
            datetime(2026, 3, 3, tzinfo=UTC),
            "2026-03-02",
        ),
        # ISO week 1 of 2027 starts on Monday 2027-01-04; 2027-01-02 is in 2026-W53.
        (
            "weekly",
            datetime(2027, 1, 2, 12, tzinfo=UTC),
            datetime(2026, 12, 28, tzinfo=UTC),
            datetime(2027, 1, 4, tzinfo=UTC),
            "2026-W53",
        ),
        (
            "monthly",
            datetime(2026, 12, 31, 23, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
            "2026-12",
        ),
        (
            "total",
            datetime(2026, 5, 5, tzinfo=UTC),
            periods.TOTAL_START,
            periods.TOTAL_END,
            "total",
        ),
    ],
)
def test_period_bounds_are_utc_calendar_ranges(
    period: str, now: datetime, start: datetime, end: datetime, key: str
) -> None:
    assert periods.period_bounds(period, now) == (start, end)
    assert periods.period_key(period, now) == key


def test_period_bounds_convert_other_timezones_to_utc() -> None:
    from zoneinfo import ZoneInfo

    late_in_new_york = datetime(2026, 3, 2, 22, 0, tzinfo=ZoneInfo("America/New_York"))
    assert periods.period_bounds("daily", late_in_new_york)[0] == datetime(2026, 3, 3, tzinfo=UTC)


def test_a_key_counts_against_its_own_and_the_tenant_wide_budget_only(
    tenant_a: Tenant, key_a: APIKey, key_a2: APIKey, tenant_b: Tenant, key_b: APIKey
) -> None:
    tenant_wide = services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("100"), period="monthly"
    )
    own = services.budget_set(
        tenant_id=tenant_a.pk,
        api_key_id=key_a.pk,
        limit_usd=Decimal("10"),
        period="daily",
        soft_limit_pct=50,
    )
    services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=key_a2.pk, limit_usd=Decimal("5"), period="daily"
    )
    services.budget_set(
        tenant_id=tenant_b.pk, api_key_id=None, limit_usd=Decimal("1"), period="total"
    )

    configs = budget_configs_for(tenant_id=tenant_a.pk, api_key_id=key_a.pk)

    assert configs == [
        BudgetConfig(
            budget_id=tenant_wide.pk,
            tenant_id=tenant_a.pk,
            api_key_id=None,
            limit_usd=Decimal("100"),
            period="monthly",
            soft_limit_pct=80,
            has_alert_webhook=False,
        ),
        BudgetConfig(
            budget_id=own.pk,
            tenant_id=tenant_a.pk,
            api_key_id=key_a.pk,
            limit_usd=Decimal("10"),
            period="daily",
            soft_limit_pct=50,
            has_alert_webhook=False,
        ),
    ]
    assert configs[1].soft_limit_usd == Decimal("5")


@pytest.mark.django_db(transaction=True)  # the async ORM runs on another connection
async def test_budget_configs_can_be_read_from_async_code(tenant_a: Tenant) -> None:
    from asgiref.sync import sync_to_async

    from billing.selectors import abudget_configs_for

    await sync_to_async(services.budget_set)(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("3"), period="weekly"
    )
    try:
        configs = await abudget_configs_for(tenant_id=tenant_a.pk, api_key_id=None)
    finally:
        # The async ORM's connection lives on asgiref's worker thread; close it there, or the
        # test database cannot be dropped at the end of the session.
        await sync_to_async(connections.close_all)()
    assert [config.limit_usd for config in configs] == [Decimal("3")]


def test_setting_a_budget_twice_replaces_it(tenant_a: Tenant) -> None:
    services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("1"), period="daily"
    )
    services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("2"), period="monthly"
    )
    assert list(Budget.objects.values_list("limit_usd", "period")) == [(Decimal("2"), "monthly")]


def test_spend_in_a_period_is_summed_exactly_from_the_ledger(
    tenant_a: Tenant, key_a: APIKey, key_a2: APIKey, tenant_b: Tenant
) -> None:
    def record(tenant_id: int, api_key_id: int, cost: str, at: datetime) -> UsageRecord:
        return UsageRecord(
            event_id=f"e{UsageRecord.objects.count()}-{tenant_id}-{api_key_id}-{cost}-{at:%s}",
            tenant_id=tenant_id,
            api_key_id=api_key_id,
            requested_model="m",
            served_model="m",
            endpoint="chat.completions",
            cost_usd=Decimal(cost),
            latency_ms=1,
            status_code=200,
            started_at=at,
            finished_at=at,
        )

    start, end = periods.period_bounds("daily", T0)
    UsageRecord.objects.bulk_create(
        [
            record(tenant_a.pk, key_a.pk, "0.000000000001", T0),
            record(tenant_a.pk, key_a.pk, "0.1", start),  # the start is inside
            record(tenant_a.pk, key_a2.pk, "0.2", T0),
            record(tenant_a.pk, key_a.pk, "5", end),  # the end is not
            record(tenant_a.pk, key_a.pk, "7", start - timedelta(microseconds=1)),
            record(tenant_b.pk, 999, "9", T0),
        ]
    )

    assert spent_in_period(
        tenant_id=tenant_a.pk, api_key_id=key_a.pk, period_start=start, period_end=end
    ) == Decimal("0.100000000001")
    assert spent_in_period(
        tenant_id=tenant_a.pk, api_key_id=None, period_start=start, period_end=end
    ) == Decimal("0.300000000001")


def test_set_budget_command_targets_a_key_by_id_or_a_tenant_by_slug(
    tenant_a: Tenant, key_a: APIKey
) -> None:
    out = StringIO()
    call_command(
        "set_budget",
        key_a.public_id,
        "--limit-usd",
        "12.50",
        "--period",
        "weekly",
        "--soft-pct",
        "90",
        stdout=out,
    )
    call_command("set_budget", "tenant-a", "--limit-usd", "100", stdout=out)

    by_key = Budget.objects.get(api_key=key_a)
    assert (by_key.limit_usd, by_key.period, by_key.soft_limit_pct) == (
        Decimal("12.5"),
        "weekly",
        90,
    )
    tenant_wide = Budget.objects.get(tenant=tenant_a, api_key=None)
    assert (tenant_wide.limit_usd, tenant_wide.period) == (Decimal("100"), "monthly")
    assert "tenant tenant-a" in out.getvalue()
    with pytest.raises(CommandError, match="no API key id or tenant slug"):
        call_command("set_budget", "nobody", "--limit-usd", "1")
    with pytest.raises(CommandError):
        call_command("set_budget", "tenant-a", "--limit-usd", "1", "--soft-pct", "0")


class _Receiver(BaseHTTPRequestHandler):
    statuses: list[int]
    received: list[dict[str, object]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        status = self.statuses.pop(0) if self.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"statuses": [503], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Run tasks in-process: the webhook task's retry logic is what is under test, not a broker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_soft_limit_alert_posts_to_the_webhook_once_per_period_with_retries(
    tenant_a: Tenant,
    key_a: APIKey,
    redis_client: redis.Redis,
    eager_celery: None,
    webhook_receiver: tuple[str, type[_Receiver]],
) -> None:
    url, receiver = webhook_receiver
    budget = services.budget_set(
        tenant_id=tenant_a.pk,
        api_key_id=key_a.pk,
        limit_usd=Decimal("10"),
        period="monthly",
        alert_webhook_url=url,
    )

    first = services.budget_soft_limit_alert(
        budget_id=budget.pk, period_key="2026-03", spent_usd=Decimal("8.000000000001")
    )
    again = services.budget_soft_limit_alert(
        budget_id=budget.pk, period_key="2026-03", spent_usd=Decimal("9")
    )
    next_period = services.budget_soft_limit_alert(
        budget_id=budget.pk, period_key="2026-04", spent_usd=Decimal("8")
    )

    assert (first, again, next_period) == (True, False, True)
    # The first POST got a 503 and was retried; the second period's alert went straight through.
    assert len(receiver.received) == 3
    assert (
        receiver.received[0]
        == receiver.received[1]
        == {
            "event": "budget_soft_limit_reached",
            "budget_id": budget.pk,
            "tenant": "tenant-a",
            "api_key_id": key_a.pk,
            "period": "monthly",
            "period_key": "2026-03",
            "limit_usd": "10.000000",
            "soft_limit_pct": 80,
            "spent_usd": "8.000000000001",
        }
    )
    assert receiver.received[2]["period_key"] == "2026-04"


def test_soft_limit_alert_without_a_webhook_only_logs(
    tenant_a: Tenant, redis_client: redis.Redis
) -> None:
    budget = services.budget_set(
        tenant_id=tenant_a.pk, api_key_id=None, limit_usd=Decimal("1"), period="daily"
    )
    with structlog.testing.capture_logs() as logs:
        assert services.budget_soft_limit_alert(
            budget_id=budget.pk, period_key="2026-03-02", spent_usd=Decimal("0.9")
        )
    alerts = [entry for entry in logs if entry["event"] == "budget_soft_limit_reached"]
    assert [(entry["budget_id"], entry["spent_usd"]) for entry in alerts] == [(budget.pk, "0.9")]
