"""Tell the gateway that credentials changed, so it drops what it cached.

Every service that changes what a key or a tenant may do calls `credentials_changed` once. After
the transaction commits (never before: a gateway reloading early would read the old row) it
bumps the counter `aicc:credentials:version` and publishes `{"key_id": ...}` or
`{"tenant_id": ...}` on the pub/sub channel `aicc:credentials`. Subscribers drop the named entry;
the counter is the fallback for a gateway that missed a message (pub/sub is fire-and-forget): it
polls the version and drops everything when it moved.

The Redis client is created on first use from settings.REDIS_URL, never at import.
"""

from __future__ import annotations

import json
import threading

import redis
import structlog
from django.conf import settings
from django.db import transaction

logger = structlog.get_logger(__name__)

CHANNEL = "aicc:credentials"
VERSION_KEY = "aicc:credentials:version"

_client: redis.Redis | None = None
_client_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                timeout_s = getattr(settings, "REDIS_TIMEOUT_S", 1.0)
                _client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
                )
    return _client


def credentials_changed(*, key_public_id: str | None = None, tenant_id: int | None = None) -> None:
    """Announce, after commit, that one key (or every key of one tenant) changed."""
    if (key_public_id is None) == (tenant_id is None):
        raise TypeError("pass exactly one of key_public_id or tenant_id")
    payload = {"key_id": key_public_id} if key_public_id is not None else {"tenant_id": tenant_id}
    transaction.on_commit(lambda: publish(payload))


def publish(payload: dict[str, str | int]) -> None:
    """Bump the version, then publish. Errors are logged, not raised: the change is committed
    already and the gateway's cache TTL bounds how long a missed message matters."""
    try:
        pipe = _redis().pipeline(transaction=True)
        # Version first: a subscriber that reacts to the message and re-reads the version
        # must see the new value.
        pipe.incr(VERSION_KEY)
        pipe.publish(CHANNEL, json.dumps(payload))
        pipe.execute()
    except redis.RedisError:
        logger.exception("credentials_changed_publish_failed", **payload)


def current_version() -> int:
    """The version counter (0 before the first change)."""
    value = _redis().get(VERSION_KEY)
    return int(value) if value is not None else 0
