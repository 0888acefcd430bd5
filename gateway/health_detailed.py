"""Detailed health: every dependency's status, the breakers, recent traffic, uptime.

`detailed_health(deps)` runs all checks concurrently, each bounded by `deps.timeout_s`, so the
whole answer takes at most about one timeout even when a dependency hangs (e.g. a frozen
Redis). It never raises; a failing check is a status, not a 500.

Each component is `healthy`, `degraded`, `unhealthy` or `disabled` (not configured), with
`latency_ms` and a `detail`. Redis, the database and the primary upstream are required: their
failure makes the whole `unhealthy` (HTTP 503). Ollama, Celery and Langfuse are optional: their
failure, a stale Celery heartbeat, or a breaker that is not closed make it `degraded` (HTTP 200).

Upstream: LiteLLM's own liveness endpoint, GET /health/liveliness (no LLM call, no key). An
upstream answering 404 there is not LiteLLM; then GET /v1/models with the gateway's upstream
key (also no LLM call) stands in. Ollama: GET /api/version. Langfuse: GET /api/public/health.
Celery: the age of the heartbeat `gateway.tasks.celery_heartbeat` writes every 10 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from asgiref.sync import sync_to_async
from redis.asyncio import Redis

from gateway import policy_status
from gateway.breaker import CircuitBreaker
from gateway.health import database_ping
from gateway.metrics import PROCESS_STARTED_AT
from gateway.recent_stats import recent_window
from gateway.tasks import HEARTBEAT_KEY

Status = Literal["healthy", "degraded", "unhealthy", "disabled"]
_RANK: dict[str, int] = {"disabled": 0, "healthy": 0, "degraded": 1, "unhealthy": 2}


class CheckFailed(Exception):
    """A dependency answered, but not well; the message is the detail shown."""


class CheckDegraded(Exception):
    """A dependency works but needs attention (e.g. a stale heartbeat)."""


async def database_ping_async() -> None:
    await sync_to_async(database_ping, thread_sensitive=False)()


@dataclass(slots=True)
class HealthDeps:
    redis: Redis
    http: aiohttp.ClientSession
    upstream_url: str
    upstream_api_key: str = ""
    ollama_url: str = ""
    langfuse_host: str = ""
    breaker_names: Sequence[str] = ("litellm",)
    timeout_s: float = 2.0
    heartbeat_stale_s: float = 60.0
    started_at: float = PROCESS_STARTED_AT
    clock: Callable[[], float] = time.time
    database_ping: Callable[[], Awaitable[None]] = field(default=database_ping_async)


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    is_required: bool
    check: Callable[[HealthDeps], Awaitable[str]] | None  # None: not configured


async def _run(component: Component, deps: HealthDeps) -> dict[str, Any]:
    if component.check is None:
        return {"status": "disabled", "latency_ms": None, "detail": "not configured"}
    started = time.perf_counter()
    status: Status = "healthy"
    try:
        async with asyncio.timeout(deps.timeout_s):
            detail = await component.check(deps)
    except CheckDegraded as exc:
        status, detail = "degraded", str(exc)
    except TimeoutError:
        status, detail = _failed(component), f"no answer within {deps.timeout_s} s"
    except CheckFailed as exc:
        status, detail = _failed(component), str(exc)
    except Exception as exc:  # any failure of a dependency is a status, never a 500
        status, detail = _failed(component), f"{type(exc).__name__}: {exc}".removesuffix(": ")
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return {"status": status, "latency_ms": latency_ms, "detail": detail}


def _failed(component: Component) -> Status:
    return "unhealthy" if component.is_required else "degraded"


# --- the checks ---------------------------------------------------------------------------------
async def _get(
    deps: HealthDeps, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with deps.http.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, (await response.text())[:200]


async def check_upstream(deps: HealthDeps) -> str:
    status, _ = await _get(deps, f"{deps.upstream_url}/health/liveliness")
    if status == 200:
        return "liveliness ok"
    if status != 404:
        raise CheckFailed(f"/health/liveliness answered HTTP {status}")
    headers = {"authorization": f"Bearer {deps.upstream_api_key}"} if deps.upstream_api_key else {}
    status, _ = await _get(deps, f"{deps.upstream_url}/v1/models", headers)
    if status == 200:
        return "no /health/liveliness (not LiteLLM); /v1/models ok"
    raise CheckFailed(f"no /health/liveliness; /v1/models answered HTTP {status}")


async def check_ollama(deps: HealthDeps) -> str:
    status, body = await _get(deps, f"{deps.ollama_url}/api/version")
    if status != 200:
        raise CheckFailed(f"/api/version answered HTTP {status}")
    return body.strip()


async def check_langfuse(deps: HealthDeps) -> str:
    status, _ = await _get(deps, f"{deps.langfuse_host}/api/public/health")
    if status != 200:
        raise CheckFailed(f"/api/public/health answered HTTP {status}")
    return "ok"


async def check_redis(deps: HealthDeps) -> str:
    await deps.redis.ping()
    return "ping ok"


async def check_database(deps: HealthDeps) -> str:
    await deps.database_ping()
    return "select 1 ok"


async def check_celery(deps: HealthDeps) -> str:
    raw = await deps.redis.get(HEARTBEAT_KEY)
    if raw is None:
        raise CheckDegraded("no worker heartbeat (is Celery beat and a worker running?)")
    age_s = deps.clock() - float(raw)
    if age_s > deps.heartbeat_stale_s:
        raise CheckDegraded(f"last worker heartbeat {age_s:.0f} s ago")
    return f"last worker heartbeat {age_s:.1f} s ago"


def components(deps: HealthDeps) -> tuple[Component, ...]:
    return (
        Component("upstream", True, check_upstream),
        Component("redis", True, check_redis),
        Component("database", True, check_database),
        Component("celery", False, check_celery),
        Component("ollama", False, check_ollama if deps.ollama_url else None),
        Component("langfuse", False, check_langfuse if deps.langfuse_host else None),
    )


# --- breakers and traffic -----------------------------------------------------------------------
async def _breakers(deps: HealthDeps) -> dict[str, Any]:
    async def one(name: str) -> dict[str, Any]:
        breaker = CircuitBreaker(name, redis=deps.redis, redis_timeout_s=deps.timeout_s)
        try:
            snapshot = await breaker.snapshot()
        except Exception as exc:  # e.g. a Redis auth error: a status, never a 500
            return {"state": "unknown", "detail": type(exc).__name__}
        if not snapshot["is_shared"]:
            # A fresh breaker's local state says nothing; the shared one could not be read.
            return {"state": "unknown", "detail": "Redis unavailable"}
        return {key: value for key, value in snapshot.items() if key != "upstream"}

    results = await asyncio.gather(*(one(name) for name in deps.breaker_names))
    return dict(zip(deps.breaker_names, results, strict=True))


async def _traffic(deps: HealthDeps) -> dict[str, Any]:
    try:
        async with asyncio.timeout(deps.timeout_s):
            return await recent_window(deps.redis, clock=deps.clock)
    except Exception as exc:  # Redis down: reported under "redis", not a 500
        return {"status": "unavailable", "detail": type(exc).__name__}


async def _policy(deps: HealthDeps) -> dict[str, Any]:
    try:
        async with asyncio.timeout(deps.timeout_s):
            return await policy_status.read(deps.redis)
    except Exception as exc:  # Redis down: reported under "redis", not a 500
        return {"status": "unavailable", "detail": type(exc).__name__}


def _overall(checks: dict[str, dict[str, Any]], breakers: dict[str, Any]) -> Status:
    worst = max(_RANK[check["status"]] for check in checks.values())
    if worst == 0 and any(b["state"] not in ("closed", "unknown") for b in breakers.values()):
        worst = 1
    return ("healthy", "degraded", "unhealthy")[worst]  # type: ignore[return-value]


async def detailed_health(deps: HealthDeps) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 when unhealthy, else 200."""
    listed = components(deps)
    results = await asyncio.gather(
        *(_run(component, deps) for component in listed),
        _breakers(deps),
        _traffic(deps),
        _policy(deps),
    )
    checks = {component.name: result for component, result in zip(listed, results, strict=False)}
    breakers, traffic, policy = results[-3], results[-2], results[-1]
    status = _overall(checks, breakers)
    body = {
        "status": status,
        "uptime_seconds": round(deps.clock() - deps.started_at, 1),
        "checks": checks,
        "breakers": breakers,
        "recent": traffic,
        "policy": policy,
    }
    return (503 if status == "unhealthy" else 200), body
