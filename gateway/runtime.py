"""Process-wide resources of the hot path: the Redis pool, the credential cache, the upstream
session. Created at start-up (ASGI lifespan) or lazily on first use; closed at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import structlog
from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis

from gateway import metrics, policy_status, upstream
from gateway.auth import CredentialCache
from gateway.auth_guard import FailedKeyGuard
from gateway.cache import ResponseCache
from gateway.langfuse import LangfuseExporter
from gateway.last_used import LastUsedRecorder
from gateway.metering import Meter
from gateway.prices import PriceCache
from gateway.recent_stats import RecentStats
from gateway.redis_connection import pool_from_url
from gateway.resilience import Resilience
from gateway.routing import Router
from gateway.targets import Targets

log = structlog.get_logger(__name__)

# Shutdown waits at most this long on each step (a flush to a locked row or an unanswering
# Redis would otherwise hold the worker for ever after its connections have closed).
STOP_STEP_TIMEOUT_S = 5.0


class Runtime:
    def __init__(self) -> None:
        self.credentials = CredentialCache()
        self.failed_key_guard = FailedKeyGuard(
            max_failures_per_minute=settings.AICC_AUTH_FAILURES_PER_MINUTE
        )
        self.prices = PriceCache()
        self.last_used = LastUsedRecorder()
        self._redis: Redis | None = None
        self._meter: Meter | None = None
        self._resilience: Resilience | None = None
        self._response_cache: ResponseCache | None = None
        # Built now, not lazily: a bad upstream, fallback or policy configuration must stop
        # start-up (uvicorn treats a failing lifespan start-up as "no lifespan" and serves).
        self.targets = Targets.from_settings()
        self.router = Router()
        self.credentials.on_change(self.router.clear_overrides)
        self.credentials.on_change(self._limits_may_have_changed)
        self._background: list[asyncio.Task[None]] = []
        self.in_flight = 0  # /v1 requests this process is serving now (gateway.app)
        self.recent_stats = RecentStats()
        self.langfuse = LangfuseExporter.from_settings()  # None unless configured

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            # A blocking pool: a burst waits briefly for a free connection instead of failing
            # (redis-py's plain pool raises MaxConnectionsError when full).
            pool = pool_from_url(
                BlockingConnectionPool,
                settings.REDIS_URL,
                max_connections=settings.AICC_REDIS_MAX_CONNECTIONS,
                timeout=settings.REDIS_TIMEOUT_S,
                socket_timeout=settings.REDIS_TIMEOUT_S,
                socket_connect_timeout=settings.REDIS_TIMEOUT_S,
                health_check_interval=30,
            )
            self._redis = Redis(connection_pool=pool)
        return self._redis

    def _limits_may_have_changed(self) -> None:
        if self._meter is not None:
            self._meter.headroom.forget()

    @property
    def meter(self) -> Meter:
        if self._meter is None:
            self._meter = Meter(self.redis, self.prices)
        return self._meter

    @property
    def response_cache(self) -> ResponseCache:
        if self._response_cache is None:
            self._response_cache = ResponseCache(
                self.redis,
                ttl_s=settings.AICC_CACHE_TTL_S,
                max_entry_bytes=settings.AICC_CACHE_MAX_ENTRY_BYTES,
                timeout_s=settings.AICC_CACHE_TIMEOUT_S,
                is_enabled=settings.AICC_CACHE_ENABLED,
            )
        return self._response_cache

    @property
    def resilience(self) -> Resilience:
        if self._resilience is None:
            self._resilience = Resilience(self.redis, self.targets)
        return self._resilience

    async def start(self) -> None:
        await self.prices.load()
        await self.router.start()
        self._background.append(
            asyncio.create_task(policy_status.publish_forever(self.redis, self.router))
        )
        self._background.append(asyncio.create_task(self.credentials.watch(self.redis)))
        self._background.append(asyncio.create_task(self.prices.refresh_forever()))
        self._background.append(asyncio.create_task(self.last_used.flush_forever()))
        self._background.append(asyncio.create_task(self.recent_stats.flush_forever(self.redis)))
        if self.langfuse is not None:
            self._background.append(asyncio.create_task(self.langfuse.run_forever()))
        log.info("gateway_started", upstream=settings.AICC_UPSTREAM_URL)

    async def stop(self) -> None:
        await _bounded("policy_watch", self.router.stop())
        for task in self._background:
            task.cancel()
        await _bounded("background", asyncio.gather(*self._background, return_exceptions=True))
        self._background.clear()
        await _bounded("last_used_flush", self.last_used.flush())
        await _bounded("recent_stats_flush", self.recent_stats.flush(self.redis))
        if self.langfuse is not None:
            await _bounded("langfuse_close", self.langfuse.close())
        metrics.process_stopped()
        await _bounded("upstream_close", upstream.close())
        if self._redis is not None:
            await _bounded("redis_close", self._redis.aclose())
            self._redis = None
        log.info("gateway_stopped")


async def _bounded(step: str, work: Awaitable[object]) -> None:
    try:
        async with asyncio.timeout(STOP_STEP_TIMEOUT_S):
            await work
    except TimeoutError:
        log.error("shutdown_step_timed_out", step=step, timeout_s=STOP_STEP_TIMEOUT_S)
