"""Liveness (touches nothing) and readiness (database and Redis answer within a short timeout)."""

from __future__ import annotations

import asyncio
import time

import orjson
from asgiref.sync import sync_to_async
from django.db import connection
from redis.asyncio import Redis

from gateway.http import Response

READY_TIMEOUT_S = 2.0


def liveness() -> Response:
    return Response(200, b'{"status":"ok"}')


def database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()  # readiness runs in a worker thread: hand its connection back


async def _probe(check: object) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, READY_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def readiness(redis: Redis) -> Response:
    database, cache = await asyncio.gather(
        _probe(sync_to_async(database_ping, thread_sensitive=False)()),
        _probe(redis.ping()),
    )
    is_ready = database["status"] == "up" and cache["status"] == "up"
    body = {"status": "ready" if is_ready else "unavailable", "database": database, "redis": cache}
    return Response(200 if is_ready else 503, orjson.dumps(body))
