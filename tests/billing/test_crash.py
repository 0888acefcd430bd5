"""Crash safety with real Celery workers: SIGKILL mid-batch, restart, count every event once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from aicc_site.celery import app as celery_app
from billing import events, tasks
from billing.consumer import GROUP
from billing.events import usage_event_append_sync
from billing.models import ModelPrice, UsageRecord
from tests.billing.conftest import MakeEvent

BASE_DIR = Path(__file__).resolve().parents[2]
EVENTS = 150
DUPLICATES = 15
KILLS = 3


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "aicc_site",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def worker_env() -> dict[str, str]:
    database = connection.settings_dict
    return {
        **os.environ,
        # The test database, so the worker writes where the test reads.
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "AICC_USAGE_BATCH_SIZE": "20",
        # Most of a batch's time is spent inside its transaction, so a kill lands mid-batch.
        "AICC_USAGE_BATCH_DELAY_S": "0.25",
        "AICC_USAGE_CLAIM_IDLE_MS": "500",
        "AICC_USAGE_DRAIN_BUDGET_S": "2",
    }


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _beat() -> None:
    """What celery beat does every 2 s in production."""
    celery_app.send_task("billing.tasks.drain_usage_events")


def _wait_for(condition: object, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    next_beat = 0.0
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        if time.monotonic() >= next_beat:
            _beat()
            next_beat = time.monotonic() + 1.0
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the worker is pointed at a PostgreSQL test database"
)
@pytest.mark.django_db(transaction=True)
def test_workers_killed_mid_batch_lose_no_event_and_count_none_twice(
    redis_client: redis.Redis,
    make_event: MakeEvent,
    test_prices: list[ModelPrice],
    worker_env: dict[str, str],
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    batch = [make_event() for _ in range(EVENTS)]
    for event in batch:
        usage_event_append_sync(redis_client, event)
    for event in batch[:DUPLICATES]:  # the producer retried: same event ids again
        usage_event_append_sync(redis_client, event)
    rng = random.Random(20261126)
    kills_with_pending_entries = 0

    for _ in range(KILLS):
        before = UsageRecord.objects.count()
        worker = Worker(worker_env, tmp_path / "worker.log")
        workers.append(worker)
        _wait_for(
            lambda before=before: UsageRecord.objects.count() > before,
            timeout_s=60,
            what="the worker to commit a batch",
        )
        time.sleep(rng.uniform(0.05, 0.4))
        worker.kill()
        if redis_client.xpending(events.STREAM, GROUP)["pending"]:
            kills_with_pending_entries += 1
        # The dead worker's lock would expire after its timeout; skip that wait.
        redis_client.delete(tasks.DRAIN_LOCK)

    assert UsageRecord.objects.count() < EVENTS, "the kills came too late to test anything"
    workers.append(Worker(worker_env, tmp_path / "worker.log"))
    _wait_for(
        lambda: (
            UsageRecord.objects.count() >= EVENTS
            and redis_client.xpending(events.STREAM, GROUP)["pending"] == 0
        ),
        timeout_s=90,
        what="the stream to drain",
    )

    recorded = list(UsageRecord.objects.values_list("event_id", flat=True))
    assert len(recorded) == EVENTS
    assert set(recorded) == {event.event_id for event in batch}
    assert kills_with_pending_entries >= 1, "no kill left entries pending: nothing was reclaimed"
