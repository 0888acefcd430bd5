"""Graceful shutdown: on SIGTERM the server stops accepting, in-flight streams finish, and their
usage is still metered."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
from structlog.testing import capture_logs

from billing.models import UsageRecord
from gateway import runtime as runtime_module
from gateway.runtime import Runtime
from tenants.services import IssuedKey
from tests.fake_upstream import FakeUpstream
from tests.gateway.test_metering_e2e import drain_ledger
from tests.live import GatewayProcess


def _refuses_new_connections(url: str, within_s: float = 1.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=0.5)
        except httpx.TransportError:
            return True
        time.sleep(0.02)
    return False


def test_sigterm_lets_an_in_flight_stream_finish_and_meters_it(
    django_db_setup: None,
    fake_upstream: FakeUpstream,
    key_a: IssuedKey,
    redis_url: str,
    redis_client: object,
) -> None:
    process = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
    first_chunk = threading.Event()
    lines: list[str] = []

    def stream() -> None:
        with httpx.stream(
            "POST",
            f"{process.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key_a.raw_key}", "X-Correlation-ID": "sigterm"},
            # ~600 chunks, 5 ms apart: about 3 s of streaming.
            json={
                "model": "fault-slow-stream",
                "messages": [{"role": "user", "content": "keep talking"}],
                "max_tokens": 600,
                "stream": True,
            },
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                lines.append(line)
                first_chunk.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_chunk.wait(10)
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    assert _refuses_new_connections(process.url), "still accepting while draining"
    assert reader.is_alive(), "the stream ended before the check: make it longer"
    reader.join(30)
    process.process.wait(30)
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    drain_ledger()
    record = UsageRecord.objects.get(correlation_id="sigterm")
    assert record.completion_tokens == 600
    assert record.status_code == 200


async def test_a_shutdown_step_that_never_ends_is_given_up_and_the_rest_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = Runtime()
    monkeypatch.setattr(runtime_module, "STOP_STEP_TIMEOUT_S", 0.2)
    never = asyncio.Event()
    runtime.last_used.note("some-key")  # so that the flush has something to write

    async def blocked_flush() -> None:  # e.g. an UPDATE waiting on a locked row
        await never.wait()

    monkeypatch.setattr(runtime.last_used, "flush", blocked_flush)
    redis = runtime.redis

    started = time.monotonic()
    with capture_logs() as logs:
        await asyncio.wait_for(runtime.stop(), timeout=5)

    assert time.monotonic() - started < 2
    timed_out = [entry for entry in logs if entry["event"] == "shutdown_step_timed_out"]
    assert [entry["step"] for entry in timed_out] == ["last_used_flush"]
    # The steps after it still ran: the Redis pool was closed and the runtime let go of it.
    assert runtime._redis is None
    assert redis.connection_pool._in_use_connections == set()
    assert logs[-1]["event"] == "gateway_stopped"
