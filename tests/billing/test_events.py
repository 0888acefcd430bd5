from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
import redis.asyncio as aioredis

from billing import events
from billing.events import MalformedEvent, decode, encode
from gateway.meter_scripts import MeterScripts
from tests.billing.conftest import MakeEvent


def test_an_event_survives_encoding_with_decimals_and_utc_datetimes(make_event: MakeEvent) -> None:
    event = make_event(cost_usd=Decimal("0.000000150000"), upstream_cost_usd=Decimal("0.1"))
    payload = orjson.loads(encode(event))
    assert payload["cost_usd"] == "0.000000150000"  # a string, never a float
    assert decode(encode(event)) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt_tokens", -1),
        ("prompt_tokens", True),
        ("prompt_tokens", "12"),
        ("cost_usd", 0.5),
        ("cost_usd", "abc"),
        ("started_at", "2026-03-02T10:00:00"),  # no offset
        ("is_streamed", "yes"),
        ("event_id", ""),
    ],
)
def test_decode_rejects_values_of_the_wrong_shape(
    make_event: MakeEvent, field: str, value: object
) -> None:
    payload = orjson.loads(encode(make_event()))
    payload[field] = value
    with pytest.raises(MalformedEvent):
        decode(orjson.dumps(payload))


def test_decode_rejects_missing_fields_and_non_json(make_event: MakeEvent) -> None:
    payload = orjson.loads(encode(make_event()))
    del payload["tenant_id"]
    with pytest.raises(MalformedEvent, match="tenant_id"):
        decode(orjson.dumps(payload))
    with pytest.raises(MalformedEvent):
        decode(b"{not json")


def test_decode_ignores_fields_a_newer_producer_added(make_event: MakeEvent) -> None:
    event = make_event()
    payload = orjson.loads(encode(event))
    payload["region"] = "eu"
    assert decode(orjson.dumps(payload)) == event


def test_naive_datetimes_are_refused_by_the_producer(make_event: MakeEvent) -> None:
    event = make_event(started_at=datetime(2026, 1, 1), finished_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        encode(event)


async def test_the_gateway_settlement_adds_one_entry_to_the_usage_stream(
    aredis: aioredis.Redis, make_event: MakeEvent
) -> None:
    event = make_event(started_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    await MeterScripts(aredis, timeout_s=1.0).settle(None, None, encode(event))
    entries = await aredis.xrange(events.STREAM)
    assert len(entries) == 1
    assert decode(entries[0][1][events.FIELD]) == event
