"""Which routing policy each gateway process has in force, for /health/detailed.

/health/detailed is served by Django, which holds no router; so every gateway process writes
its router's snapshot to Redis every `PUBLISH_INTERVAL_S` (expiring after `ENTRY_TTL_S`, so
stopped processes drop out), and the health page lists them and says whether they agree.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.routing import Router

log = structlog.get_logger(__name__)

KEY_PREFIX = "aicc:policy:process:"
PUBLISH_INTERVAL_S = 5.0
ENTRY_TTL_S = 15


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def publish(redis: Redis, router: Router) -> None:
    snapshot = {**router.snapshot(), "process": _process_name()}
    await redis.set(KEY_PREFIX + snapshot["process"], orjson.dumps(snapshot), ex=ENTRY_TTL_S)


async def publish_forever(redis: Redis, router: Router) -> None:
    while True:
        try:
            await publish(redis, router)
        except RedisError as exc:
            log.warning("policy_status_publish_failed", error=type(exc).__name__)
        await asyncio.sleep(PUBLISH_INTERVAL_S)


async def read(redis: Redis) -> dict[str, Any]:
    """{"processes": [snapshot, ...], "versions": [...], "is_consistent": bool}."""
    keys = [key async for key in redis.scan_iter(match=KEY_PREFIX + "*", count=100)]
    values = await redis.mget(keys) if keys else []
    processes = sorted(
        (orjson.loads(value) for value in values if value is not None),
        key=lambda snapshot: snapshot["process"],
    )
    versions = sorted({snapshot["version"] for snapshot in processes})
    return {"processes": processes, "versions": versions, "is_consistent": len(versions) <= 1}
