"""What the gateways hear when credentials change, observed on real Redis.

Pub/sub channels are server-wide, not per database: test runs on other Redis databases of the
same server publish on the same channel. So a count is taken from the version counter (which
lives in this test's own database) and messages are only checked to contain what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tenants import events


class CredentialsFeed:
    def __init__(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(events.CHANNEL)
        self._pubsub.get_message(timeout=1)  # the subscribe confirmation
        self._version = events.current_version()

    def _drain(self) -> list[dict[str, Any]]:
        received = []
        while (
            message := self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        ) is not None:
            received.append(json.loads(message["data"]))
        return received

    def assert_published(self, *expected: dict[str, Any]) -> None:
        """Exactly len(expected) changes since the last check, each announced as expected."""
        received = self._drain()
        version, self._version = self._version, events.current_version()
        assert self._version - version == len(expected), (version, self._version, received)
        for payload in expected:
            assert payload in received, (payload, received)

    def close(self) -> None:
        self._pubsub.close()


# Imported by the test modules that use it; named so the import does not shadow the argument.
@pytest.fixture(name="credentials_feed")
def credentials_feed_fixture(redis_client: redis.Redis) -> Iterator[CredentialsFeed]:
    feed = CredentialsFeed(redis_client)
    yield feed
    feed.close()
