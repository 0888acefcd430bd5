"""Shared fixtures: real Redis, real database, the fake upstream, live gateway processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings


@pytest.fixture(scope="session")
def redis_url() -> str:
    return settings.REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on a Redis emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on a Redis emptied before the test."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


def pytest_configure(config: pytest.Config) -> None:
    # With REDIS_URL unset the suite runs on the embedded Redis; start it once for everyone.
    if settings.IS_EMBEDDED_REDIS:
        from aicc_site import embedded_redis

        embedded_redis.ensure_running()
