"""Brute-force guard: too many invalid keys from one client address in a minute → 429.

Only failed attempts cost anything (one pipelined INCR + EXPIRE on Redis, shared by every
gateway process), so a valid key pays nothing. django-ratelimit does this job for the Django
views; it is sync-only and tied to HttpRequest, so the async hot path counts here instead.
The count uses a fixed one-minute window: precision does not matter for abuse, cost does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import GatewayError

log = structlog.get_logger(__name__)

WINDOW_S = 60


class FailedKeyGuard:
    def __init__(
        self, *, max_failures_per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_failures = max_failures_per_minute
        self.clock = clock

    async def refuse_if_abusive(self, redis: Redis, client_host: str, error: GatewayError) -> None:
        """Count one failed authentication; raise 429 instead of `error` past the limit."""
        window = int(self.clock()) // WINDOW_S
        counter = f"aicc:authfail:{client_host}:{window}"
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, WINDOW_S * 2)
                failures, _ = await pipe.execute()
        except RedisError:
            return  # the 401 stands; a Redis outage must not turn refusals into 500s
        if failures > self.max_failures:
            retry_after_s = WINDOW_S - int(self.clock()) % WINDOW_S
            if failures == self.max_failures + 1:
                log.warning("auth_failures_throttled", client_host=client_host)
            raise GatewayError(
                429,
                "Too many requests with invalid API keys from this address; try again later.",
                code="rate_limit_exceeded",
                headers=[("retry-after", str(retry_after_s))],
            ) from error
