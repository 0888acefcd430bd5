"""The usage event contract between the hot path (producer) and the billing consumer.

One event per metered request, appended to the Redis stream `aicc:usage` as a single field
`event` holding an orjson-encoded dict: Decimals as strings, datetimes as RFC 3339 UTC.
The stream is never trimmed (no MAXLEN): entries leave it only when the consumer has committed
them to the ledger and acked them, and the trimming of acked entries is the consumer's job.

`cost_usd` may be None: the consumer then prices the event from the price book at
`started_at`. `cost_discrepancy` is recomputed by the consumer; what the producer sends is
ignored, so the flag always follows one rule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import redis

STREAM = "aicc:usage"
DEAD_LETTER_STREAM = "aicc:usage:dead"
FIELD = b"event"


class MalformedEvent(ValueError):
    """A stream entry that cannot become a ledger row (moved to the dead-letter stream)."""


@dataclass(slots=True, kw_only=True)
class UsageEvent:
    event_id: str
    tenant_id: int
    api_key_id: int
    secret_id: int | None
    requested_model: str
    served_model: str
    route_reason: str = ""
    endpoint: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal | None = None
    upstream_cost_usd: Decimal | None = None
    cost_discrepancy: bool = False
    latency_ms: int
    ttfb_ms: int | None = None
    status_code: int
    is_cache_hit: bool = False
    is_streamed: bool = False
    correlation_id: str = ""
    started_at: datetime
    finished_at: datetime


_FIELDS = {field.name: field for field in dataclasses.fields(UsageEvent)}
_INT_FIELDS = (
    "tenant_id",
    "api_key_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_ms",
    "status_code",
)
_OPTIONAL_INT_FIELDS = ("secret_id", "ttfb_ms")
_STR_FIELDS = (
    "event_id",
    "requested_model",
    "served_model",
    "route_reason",
    "endpoint",
    "correlation_id",
)
_BOOL_FIELDS = ("cost_discrepancy", "is_cache_hit", "is_streamed")
_DECIMAL_FIELDS = ("cost_usd", "upstream_cost_usd")
_DATETIME_FIELDS = ("started_at", "finished_at")


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")  # plain notation: "0.00000015", not "1.5E-7"
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(event: UsageEvent) -> bytes:
    for name in _DATETIME_FIELDS:
        if getattr(event, name).tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    payload = {name: getattr(event, name) for name in _FIELDS}
    for name in _DATETIME_FIELDS:
        payload[name] = payload[name].astimezone(UTC)
    return orjson.dumps(payload, default=_default)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{name} must be a non-negative integer")
    return value


def decode(raw: bytes | str) -> UsageEvent:
    """The event in one stream entry's `event` field; MalformedEvent if it is not one."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("not a JSON object")
    # Unknown keys are ignored so a newer producer can add fields before the consumer knows them.
    missing = [
        name
        for name, field in _FIELDS.items()
        if name not in payload and field.default is dataclasses.MISSING
    ]
    if missing:
        raise MalformedEvent(f"missing fields: {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name in _FIELDS:
        if name not in payload:
            continue
        value = payload[name]
        if name in _INT_FIELDS:
            values[name] = _int(name, value)
        elif name in _OPTIONAL_INT_FIELDS:
            values[name] = None if value is None else _int(name, value)
        elif name in _STR_FIELDS:
            if not isinstance(value, str):
                raise MalformedEvent(f"{name} must be a string")
            values[name] = value
        elif name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise MalformedEvent(f"{name} must be a boolean")
            values[name] = value
        elif name in _DECIMAL_FIELDS:
            values[name] = None if value is None else _decimal(name, value)
        elif name in _DATETIME_FIELDS:
            values[name] = _datetime(name, value)
    if not values["event_id"] or len(values["event_id"]) > 64:
        raise MalformedEvent("event_id must be 1-64 characters")
    return UsageEvent(**values)


def _decimal(name: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise MalformedEvent(f"{name} is not a decimal: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise MalformedEvent(f"{name} must be a finite, non-negative decimal")
    return number


def _datetime(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(f"{name} is not a datetime: {value!r}") from None
    if moment.tzinfo is None:
        raise MalformedEvent(f"{name} must carry a UTC offset")
    return moment.astimezone(UTC)


def usage_event_append_sync(client: redis.Redis, event: UsageEvent) -> None:
    """Append one event to the usage stream. The gateway appends inside its settlement script
    (gateway.meter_scripts); this is for tools and tests."""
    client.xadd(STREAM, {FIELD: encode(event)})
