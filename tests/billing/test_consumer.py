from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from billing import events
from billing.consumer import GROUP, UsageConsumer
from billing.events import usage_event_append_sync
from billing.models import ModelPrice, UsageRecord
from tests.billing.conftest import MakeEvent

pytestmark = pytest.mark.django_db


def _consumer(client: redis.Redis, **kwargs: object) -> UsageConsumer:
    return UsageConsumer(client, name="test-consumer", batch_size=50, **kwargs)  # type: ignore[arg-type]


def test_an_appended_event_becomes_one_priced_ledger_row(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    event = make_event(
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=200,
        upstream_cost_usd=Decimal("0.000435"),
        is_streamed=True,
    )
    usage_event_append_sync(redis_client, event)

    result = _consumer(redis_client).drain(budget_s=5)

    assert (result.entries, result.inserted) == (1, 1)
    record = UsageRecord.objects.get(event_id=event.event_id)
    assert record.cost_usd == Decimal("0.000435")  # priced by the consumer: cost_usd was None
    assert record.upstream_cost_usd == Decimal("0.000435")
    assert record.cost_discrepancy is False
    assert (record.tenant_id, record.api_key_id, record.secret_id) == (1, 1, 1)
    assert (record.served_model, record.is_streamed, record.ttfb_ms) == ("test-small", True, 50)
    assert record.started_at == event.started_at
    assert redis_client.xpending(events.STREAM, GROUP)["pending"] == 0


def test_costs_differing_by_more_than_one_percent_are_flagged(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    agreeing = make_event(cost_usd=Decimal("0.001"), upstream_cost_usd=Decimal("0.00099"))
    disagreeing = make_event(
        cost_usd=Decimal("0.001"), upstream_cost_usd=Decimal("0.0012"), cost_discrepancy=False
    )  # the producer's opinion is ignored
    for event in (agreeing, disagreeing):
        usage_event_append_sync(redis_client, event)

    _consumer(redis_client).drain(budget_s=5)

    flags = dict(UsageRecord.objects.values_list("event_id", "cost_discrepancy"))
    assert flags == {agreeing.event_id: False, disagreeing.event_id: True}
    assert UsageRecord.objects.get(event_id=disagreeing.event_id).upstream_cost_usd == Decimal(
        "0.0012"
    )


def test_the_same_event_appended_twice_is_recorded_once(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    event = make_event()
    usage_event_append_sync(redis_client, event)
    usage_event_append_sync(redis_client, event)
    _consumer(redis_client).drain(budget_s=5)
    usage_event_append_sync(redis_client, event)  # and once more in a later batch

    result = _consumer(redis_client).drain(budget_s=5)

    assert UsageRecord.objects.filter(event_id=event.event_id).count() == 1
    assert result.duplicates == 1


def test_malformed_entries_go_to_the_dead_letter_stream_and_do_not_block_the_batch(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    good = make_event()
    too_long = make_event(served_model="x" * 300)  # the column holds 200
    redis_client.xadd(events.STREAM, {events.FIELD: b"{garbage"})
    redis_client.xadd(events.STREAM, {b"other": b"field"})
    usage_event_append_sync(redis_client, too_long)
    usage_event_append_sync(redis_client, good)

    result = _consumer(redis_client).drain(budget_s=5)

    assert list(UsageRecord.objects.values_list("event_id", flat=True)) == [good.event_id]
    assert result.dead_lettered == 3
    dead = redis_client.xrange(events.DEAD_LETTER_STREAM)
    assert next(entry[1][b"field:event"] for entry in dead if b"field:event" in entry[1]) == (
        b"{garbage"
    )
    assert {entry[1][b"reason"].split(b":")[0] for entry in dead} >= {
        b"not JSON",
        b"no event field",
    }
    assert redis_client.xpending(events.STREAM, GROUP)["pending"] == 0


def test_entries_left_pending_by_a_dead_consumer_are_reclaimed(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    batch = [make_event() for _ in range(5)]
    for event in batch:
        usage_event_append_sync(redis_client, event)
    dead = UsageConsumer(redis_client, name="dead-worker", batch_size=50)
    assert len(dead._read_new()) == 5  # read, then "killed" before inserting or acking

    survivor = UsageConsumer(redis_client, name="survivor", batch_size=50, claim_idle_ms=0)
    result = survivor.drain(budget_s=5)

    assert result.reclaimed == 5
    assert set(UsageRecord.objects.values_list("event_id", flat=True)) == {
        event.event_id for event in batch
    }
    assert redis_client.xpending(events.STREAM, GROUP)["pending"] == 0


def test_entries_of_a_live_consumer_are_not_reclaimed_before_the_idle_time(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    usage_event_append_sync(redis_client, make_event())
    UsageConsumer(redis_client, name="busy-worker")._read_new()

    other = UsageConsumer(redis_client, name="other", claim_idle_ms=60_000)
    assert other.drain(budget_s=5).entries == 0
    assert UsageRecord.objects.count() == 0


def test_acked_entries_are_trimmed_from_the_stream(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    for _ in range(30):
        usage_event_append_sync(redis_client, make_event())
    _consumer(redis_client).drain(budget_s=5)
    # MINID keeps the last delivered entry itself; everything before it is gone.
    assert redis_client.xlen(events.STREAM) <= 1
    assert UsageRecord.objects.count() == 30


def test_an_event_for_an_unpriced_model_is_kept_at_the_upstream_cost(
    redis_client: redis.Redis, make_event: MakeEvent, settings
) -> None:
    settings.AICC_UNKNOWN_MODEL_PRICE_AS = ""
    event = make_event(served_model="mystery", upstream_cost_usd=Decimal("0.002"))
    usage_event_append_sync(redis_client, event)
    _consumer(redis_client).drain(budget_s=5)
    assert UsageRecord.objects.get(event_id=event.event_id).cost_usd == Decimal("0.002")


def test_consumers_of_restarted_workers_are_forgotten_once_they_own_nothing(
    redis_client: redis.Redis, make_event: MakeEvent, test_prices: list[ModelPrice]
) -> None:
    usage_event_append_sync(redis_client, make_event())
    UsageConsumer(redis_client, name="gone-with-work")._read_new()
    UsageConsumer(redis_client, name="gone-idle")._read_new()  # reads nothing: owns nothing

    UsageConsumer(redis_client, name="current").forget_idle_consumers(idle_ms=0)

    names = {c["name"] for c in redis_client.xinfo_consumers(events.STREAM, GROUP)}
    assert names == {b"gone-with-work"}
