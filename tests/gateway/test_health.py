"""Liveness touches nothing; readiness checks the database and Redis within a short timeout."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess

pytestmark = pytest.mark.smoke


def test_liveness_is_200(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_is_200_when_database_and_redis_answer(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/health/ready")
    assert response.status_code == 200
    assert response.json()["database"]["status"] == "up"
    assert response.json()["redis"]["status"] == "up"


def test_readiness_is_503_when_redis_is_unreachable(
    django_db_setup: None, fake_upstream: FakeUpstream
) -> None:
    process = GatewayProcess(
        upstream_url=fake_upstream.url, redis_url="redis://127.0.0.1:1/0"
    ).start()
    try:
        response = httpx.get(f"{process.url}/health/ready", timeout=10)
    finally:
        process.stop()
    assert response.status_code == 503
    assert response.json()["redis"]["status"] == "down"
    assert response.json()["database"]["status"] == "up"
