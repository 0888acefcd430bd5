"""Shared fixtures: real Redis, real database, the fake upstream, live gateway processes."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import connection
from pytest_django import DjangoDbBlocker

from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_create, tenant_create
from tests.fake_upstream import FakeUpstream, fake_upstream_fixture
from tests.live import LOG_PATHS, UPSTREAM_API_KEY, GatewayProcess, RedisServer


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """pytest-django's test database; before it is dropped, wait for the sessions of the
    gateway processes this run started. PostgreSQL ends a backend shortly after its client
    process exits, and DROP DATABASE refuses while one is still there."""
    yield
    with django_db_blocker.unblock():
        _wait_for_other_sessions_to_end(timeout_s=10.0)


def _wait_for_other_sessions_to_end(timeout_s: float) -> None:
    if connection.vendor != "postgresql":
        return
    others = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + timeout_s
    with connection.cursor() as cursor:
        while True:
            cursor.execute(others)
            if not cursor.fetchall():
                break
            if time.monotonic() > deadline:  # a process of ours still alive: end its sessions
                cursor.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS stale")
                break
            time.sleep(0.05)
    connection.close()


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


FULL_KEY = re.compile(r"aicc_[0-9a-z]{12}_[0-9A-Za-z]{38}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No gateway process of the whole run may have logged a whole API key or the upstream key."""
    leaks = [
        str(path)
        for path in LOG_PATHS
        if path.exists()
        and (FULL_KEY.search(text := path.read_text(errors="replace")) or UPSTREAM_API_KEY in text)
    ]
    if leaks:
        print(f"\nSECRETS FOUND IN GATEWAY LOGS: {leaks}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    # With REDIS_URL unset the suite runs on the embedded Redis; start it once for everyone.
    if settings.IS_EMBEDDED_REDIS:
        from aicc_site import embedded_redis

        embedded_redis.ensure_running()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop, restart or freeze."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    yield from fake_upstream_fixture()


@pytest.fixture(scope="session")
def gateway(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_url: str
) -> Iterator[GatewayProcess]:
    """One live gateway process for the session, on the test database and the fake upstream."""
    process = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
    yield process
    process.stop()


@pytest.fixture
def tenant_a(transactional_db: None) -> Tenant:
    return tenant_create(slug="tenant-a", name="Tenant A")


@pytest.fixture
def key_a(tenant_a: Tenant) -> IssuedKey:
    """A committed API key of tenant A, usable by live gateway processes."""
    return api_key_create(tenant=tenant_a, name="key A")
