"""Circuit breaker, retries and fallbacks through live gateway processes sharing one Redis."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

from tenants.services import IssuedKey
from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess

BREAKER_KEY = "aicc:breaker:litellm"


def chat(
    client: httpx.Client,
    url: str,
    key: IssuedKey,
    model: str = "gpt-4o-mini",
    *,
    correlation_id: str = "",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key.raw_key}"}
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    return client.post(
        f"{url}/v1/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
    )


@pytest.fixture
def breaker_gateways(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str
) -> Iterator[list[GatewayProcess]]:
    env = {
        "AICC_BREAKER_FAILURE_THRESHOLD": "4",
        "AICC_BREAKER_RESET_TIMEOUT_S": "1",
        "AICC_UPSTREAM_RETRIES": "0",
    }
    processes = [
        GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url, env=env).start()
        for _ in range(2)
    ]
    fake_upstream.reset()
    yield processes
    for process in processes:
        process.stop()
    fake_upstream.reset()
    redis_client.delete(BREAKER_KEY)  # the session's shared gateway must not inherit it


def test_breaker_opens_on_failures_counted_across_processes_and_then_fails_fast(
    breaker_gateways: list[GatewayProcess],
    key_a: IssuedKey,
    fake_upstream: FakeUpstream,
    redis_client: redis.Redis,
) -> None:
    first, second = breaker_gateways
    with httpx.Client(timeout=10) as client:
        # Two failures in each process: four in all, the threshold.
        for process in (first, second, first, second):
            assert chat(client, process.url, key_a, "fault-500").status_code == 500
        assert redis_client.hget(BREAKER_KEY, "state") == b"open"
        # Each process learns of the opening on its next call (one Redis round trip) and creates
        # its metric series for the refusal once; the 100 measured refusals come after that.
        for process in breaker_gateways:
            assert chat(client, process.url, key_a).status_code == 503
        fake_upstream.reset()
        refusals = [
            chat(client, breaker_gateways[i % 2].url, key_a, correlation_id=f"fast-{i}")
            for i in range(100)
        ]
    assert all(r.status_code == 503 for r in refusals)
    assert {r.json()["error"]["code"] for r in refusals} == {"upstream_unavailable"}
    assert all(1 <= int(r.headers["retry-after"]) <= 2 for r in refusals)
    assert fake_upstream.stats()["llm_calls"] == 0  # no upstream connection while open
    # The gateway's own time per refusal, from its request log (the HTTP client's share is not
    # the gateway's): p99 under 5 ms.
    latencies_ms = [
        line["latency_ms"]
        for i in range(100)
        for line in breaker_gateways[i % 2].completed_lines(f"fast-{i}")
    ]
    assert len(latencies_ms) == 100
    p99 = statistics.quantiles(latencies_ms, n=100)[98]
    assert p99 < 5.0, f"p99 {p99:.2f} ms"


def test_after_the_reset_timeout_one_probe_closes_it_or_reopens_it_for_longer(
    breaker_gateways: list[GatewayProcess],
    key_a: IssuedKey,
    fake_upstream: FakeUpstream,
    redis_client: redis.Redis,
) -> None:
    first, second = breaker_gateways
    with httpx.Client(timeout=10) as client:
        for process in (first, second, first, second):
            chat(client, process.url, key_a, "fault-500")
        time.sleep(1.1)
        # The probe fails: open again, with the timeout doubled.
        assert chat(client, first.url, key_a, "fault-500").status_code == 500
        assert redis_client.hget(BREAKER_KEY, "state") == b"open"
        assert redis_client.hget(BREAKER_KEY, "timeout_ms") == b"2000"
        assert chat(client, second.url, key_a).status_code == 503
        time.sleep(2.1)
        # The next probe succeeds: closed for everyone.
        assert chat(client, second.url, key_a).status_code == 200
        assert redis_client.exists(BREAKER_KEY) == 0
        assert chat(client, first.url, key_a).status_code == 200
    assert '"breaker_opened"' in first.log() + second.log()


def test_a_thousand_client_errors_never_open_the_breaker(
    breaker_gateways: list[GatewayProcess], key_a: IssuedKey, redis_client: redis.Redis
) -> None:
    with httpx.Client(timeout=10) as client:
        statuses = {
            chat(client, breaker_gateways[i % 2].url, key_a, "fault-400").status_code
            for i in range(1000)
        }
        assert statuses == {400}
        assert redis_client.hget(BREAKER_KEY, "state") != b"open"
        assert chat(client, breaker_gateways[0].url, key_a).status_code == 200


def test_connection_failures_and_503s_are_retried_before_the_first_byte(
    django_db_setup: None, fake_upstream: FakeUpstream, key_a: IssuedKey, redis_url: str
) -> None:
    process = GatewayProcess(
        upstream_url=fake_upstream.url, redis_url=redis_url, env={"AICC_UPSTREAM_RETRIES": "2"}
    ).start()
    try:
        fake_upstream.reset()
        fake_upstream.set_fault("503", count=2)
        with httpx.Client(timeout=10) as client:
            response = chat(client, process.url, key_a)
        assert response.status_code == 200
        assert fake_upstream.stats()["llm_calls"] == 3
        fake_upstream.set_fault("500", count=1)  # a plain 500 is not retried
        with httpx.Client(timeout=10) as client:
            assert chat(client, process.url, key_a).status_code == 500
    finally:
        process.stop()
        fake_upstream.reset()


def test_a_model_falls_back_to_another_model_and_to_another_upstream(
    django_db_setup: None, fake_upstream: FakeUpstream, key_a: IssuedKey, redis_url: str
) -> None:
    fallbacks = {
        "fault-500": [{"model": "gpt-4o-mini"}],
        "gpt-4o": [{"upstream": "backup", "model": "llama3-local"}],
    }
    # The primary upstream is a closed port; "backup" is the fake.
    process = GatewayProcess(
        upstream_url="http://127.0.0.1:9",
        redis_url=redis_url,
        env={
            "AICC_EXTRA_UPSTREAMS": orjson.dumps({"backup": {"url": fake_upstream.url}}).decode(),
            "AICC_FALLBACKS": orjson.dumps(fallbacks).decode(),
            "AICC_UPSTREAM_RETRIES": "1",
        },
    ).start()
    try:
        with httpx.Client(timeout=10) as client:
            response = chat(client, process.url, key_a, "gpt-4o")
            unprotected = chat(client, process.url, key_a, "gpt-4o-mini")
    finally:
        process.stop()
    assert response.status_code == 200
    assert response.json()["model"] == "llama3-local"
    assert response.headers["x-aicc-routed-model"] == "llama3-local"
    assert response.headers["x-aicc-route-reason"].endswith("fallback")
    # The request log says what the headers say: the model that answered, the fallback.
    (line,) = process.completed_lines(response.headers["x-correlation-id"])
    assert line["served_model"] == "llama3-local" and line["routed_model"] == "gpt-4o"
    assert line["route_reason"] == response.headers["x-aicc-route-reason"]
    assert unprotected.status_code == 502  # no fallback configured for it
    assert '"upstream_fallback_used"' in process.log()


def test_an_invalid_fallback_configuration_stops_start_up(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_url: str
) -> None:
    process = GatewayProcess(
        upstream_url=fake_upstream.url,
        redis_url=redis_url,
        env={"AICC_FALLBACKS": '{"gpt-4o": [{"upstream": "nowhere", "model": "x"}]}'},
    )
    with pytest.raises(RuntimeError) as caught:
        process.start(timeout_s=15)
    assert "AICC_FALLBACKS" in str(caught.value) and "unknown upstream 'nowhere'" in str(
        caught.value
    )
