"""Graceful shutdown: on SIGTERM the server stops accepting, in-flight streams finish, and their
usage is still metered."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from billing.models import UsageRecord
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
