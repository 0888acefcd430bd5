"""Celery tasks of the gateway app.

`celery_heartbeat` runs from beat every 10 s and stores the time it ran; /health/detailed
reads its age. A fresh heartbeat proves the whole chain works: beat schedules, the broker
delivers, a worker runs tasks.
"""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings

HEARTBEAT_KEY = "aicc:celery:heartbeat"
# Long enough to outlive a staleness check (60 s), short enough to vanish when Celery is gone.
HEARTBEAT_TTL_S = 600


@shared_task(ignore_result=True)
def celery_heartbeat() -> float:
    now = time.time()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.set(HEARTBEAT_KEY, repr(now), ex=HEARTBEAT_TTL_S)
    finally:
        client.close()
    return now
