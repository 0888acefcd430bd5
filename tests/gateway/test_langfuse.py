"""Langfuse export against a fake ingestion endpoint: batching, metadata only, failures absorbed."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.context import RequestContext
from gateway.langfuse import LangfuseConfig, LangfuseExporter
from gateway.metering import Ticket
from tests.gateway.test_metrics import finished_context
from tests.live import free_port

SECRET_PROMPT = "my secret prompt about the merger"


@dataclass
class FakeIngestion:
    """Records every batch; answers `status` (207 with `reject` events listed as errors)."""

    url: str = ""
    status: int = 207
    reject: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    async def ingest(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.batches.append(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        self.received.set()
        if self.status >= 400:
            return web.Response(status=self.status, text="boom")
        ids = [event["id"] for event in body["batch"]]
        reply = {
            "successes": [{"id": i, "status": 201} for i in ids[self.reject :]],
            "errors": [{"id": i, "status": 400, "message": "bad"} for i in ids[: self.reject]],
        }
        return web.Response(status=self.status, body=orjson.dumps(reply))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch["batch"]]


@pytest.fixture
async def ingestion() -> AsyncIterator[FakeIngestion]:
    fake = FakeIngestion()
    app = web.Application()
    app.router.add_post("/api/public/ingestion", fake.ingest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def exporter_for(url: str, **options: Any) -> LangfuseExporter:
    config = LangfuseConfig(host=url, public_key="pk-lf-test", secret_key="sk-lf-test", **options)
    return LangfuseExporter(config, clock=lambda: 1_700_000_000.0)


def llm_request(status: int = 200) -> RequestContext:
    ctx = finished_context("tenant-a", "gpt-4o-mini", status=status)
    ctx.payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    ctx.ticket = Ticket(
        request_id="req-0001",
        started_at=None,
        rate=None,
        budgets=(),
        price=None,  # type: ignore[arg-type]
    )
    ctx.ttfb_ms = 12.5
    return ctx


async def test_one_request_becomes_a_trace_and_a_generation_with_metadata_only(
    ingestion: FakeIngestion,
) -> None:
    exporter = exporter_for(ingestion.url)

    exporter.note(llm_request(), cost_usd=Decimal("0.000420"))
    await exporter.flush()
    await exporter.close()

    assert [event["type"] for event in ingestion.events] == ["trace-create", "generation-create"]
    trace, generation = (event["body"] for event in ingestion.events)
    assert trace["id"] == generation["traceId"] == "req-0001"  # the ledger's event_id
    assert trace["metadata"]["tenant_slug"] == "tenant-a"
    assert trace["metadata"]["correlation_id"] == "corr-1"
    assert generation["model"] == "gpt-4o-mini"
    assert generation["usageDetails"] == {"input": 11, "output": 7, "total": 18}
    assert generation["costDetails"] == {"total": 0.00042}
    assert generation["completionStartTime"] and generation["endTime"]
    assert SECRET_PROMPT not in orjson.dumps(ingestion.batches).decode()
    expected = base64.b64encode(b"pk-lf-test:sk-lf-test").decode()
    assert ingestion.authorizations == [f"Basic {expected}"]
    assert exporter.sent_events == 2 and exporter.failed_events == 0


async def test_messages_are_sent_only_when_content_is_allowed(ingestion: FakeIngestion) -> None:
    exporter = exporter_for(ingestion.url, is_content_included=True)

    exporter.note(llm_request(), cost_usd=None)
    await exporter.flush()
    await exporter.close()

    trace = ingestion.events[0]["body"]
    assert trace["input"]["messages"][0]["content"] == SECRET_PROMPT


async def test_requests_without_an_llm_endpoint_are_not_traced(ingestion: FakeIngestion) -> None:
    exporter = exporter_for(ingestion.url)
    listing = llm_request()
    listing.endpoint = ""

    exporter.note(listing, cost_usd=None)

    assert not exporter.queue


async def test_events_go_out_in_batches_of_the_configured_size(ingestion: FakeIngestion) -> None:
    exporter = exporter_for(ingestion.url, batch_size=4)

    for _ in range(5):
        exporter.note(llm_request(), cost_usd=None)
    await exporter.flush()
    await exporter.close()

    assert [len(batch["batch"]) for batch in ingestion.batches] == [4, 4, 2]
    assert exporter.sent_events == 10


async def test_a_full_batch_is_sent_without_waiting_for_the_interval(
    ingestion: FakeIngestion,
) -> None:
    exporter = exporter_for(ingestion.url, batch_size=4, flush_interval_s=60.0)
    task = asyncio.create_task(exporter.run_forever())
    try:
        exporter.note(llm_request(), cost_usd=None)
        exporter.note(llm_request(), cost_usd=None)
        async with asyncio.timeout(5):
            await ingestion.received.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await exporter.close()

    assert len(ingestion.batches[0]["batch"]) == 4


async def test_a_full_queue_drops_the_oldest_events_and_counts_them(
    ingestion: FakeIngestion,
) -> None:
    exporter = exporter_for(ingestion.url, queue_size=4, batch_size=100)
    first = llm_request()
    first.correlation_id = "oldest"

    exporter.note(first, cost_usd=None)
    for _ in range(2):
        exporter.note(llm_request(), cost_usd=None)

    assert exporter.dropped_events == 2 and len(exporter.queue) == 4
    assert all(event["body"]["metadata"]["correlation_id"] != "oldest" for event in exporter.queue)


async def test_an_ingestion_error_is_counted_and_the_next_batch_still_goes_out(
    ingestion: FakeIngestion,
) -> None:
    exporter = exporter_for(ingestion.url)
    ingestion.status = 500

    exporter.note(llm_request(), cost_usd=None)
    await exporter.flush()  # must not raise
    ingestion.status = 207
    exporter.note(llm_request(), cost_usd=None)
    await exporter.flush()
    await exporter.close()

    assert exporter.failed_events == 2 and exporter.sent_events == 2
    assert len(ingestion.batches) == 2 and not exporter.queue


async def test_events_rejected_in_a_multi_status_reply_are_counted_as_failed(
    ingestion: FakeIngestion,
) -> None:
    exporter = exporter_for(ingestion.url)
    ingestion.reject = 1

    exporter.note(llm_request(), cost_usd=None)
    await exporter.flush()
    await exporter.close()

    assert exporter.failed_events == 1 and exporter.sent_events == 1


async def test_an_unreachable_langfuse_is_counted_and_never_raises() -> None:
    exporter = exporter_for(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)

    exporter.note(llm_request(status=502), cost_usd=None)
    await exporter.flush()
    await exporter.close()

    assert exporter.failed_events == 2 and not exporter.queue


def test_export_is_off_unless_host_and_both_keys_are_set(settings: Any) -> None:
    settings.AICC_LANGFUSE_HOST = "http://127.0.0.1:3000"
    settings.AICC_LANGFUSE_PUBLIC_KEY = "pk-lf-test"
    settings.AICC_LANGFUSE_SECRET_KEY = ""
    settings.AICC_LANGFUSE_INCLUDE_CONTENT = False
    settings.AICC_LANGFUSE_QUEUE_SIZE = 10_000
    settings.AICC_LANGFUSE_BATCH_SIZE = 100
    settings.AICC_LANGFUSE_FLUSH_INTERVAL_S = 1.0
    assert LangfuseExporter.from_settings() is None

    settings.AICC_LANGFUSE_SECRET_KEY = "sk-lf-test"
    exporter = LangfuseExporter.from_settings()
    assert exporter is not None and exporter.config.host == "http://127.0.0.1:3000"
