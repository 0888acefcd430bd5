"""GET /health/detailed, served by Django (not the thin gateway handler) so that a staff user's
admin session works as it does everywhere else.

Who may read it: an active staff user (session), or a master key (`Authorization: Bearer`,
`api-key` or `x-api-key`). A tenant key is refused with 403, no credentials or an unknown key
with 401, both in OpenAI's error shape. The page names internal hosts and error details, so
tenants never see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from redis.asyncio import Redis

from gateway.auth import presented_key
from gateway.errors import error_body
from gateway.health_detailed import HealthDeps, detailed_health
from tenants import keys
from tenants.master_keys import master_key_verify


def _refusal(status: int, message: str, code: str) -> HttpResponse:
    error_type = "authentication_error" if status == 401 else "permission_error"
    body = error_body(message, error_type=error_type, param=None, code=code)
    return HttpResponse(body, status=status, content_type="application/json")


async def _access_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read detailed health, else the refusal to send."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    raw_key = presented_key(headers)
    if raw_key:
        if master_key_verify(raw_key) is not None:
            return None
        if keys.looks_like_key(raw_key):
            return _refusal(403, "Detailed health is for operators only.", "permission_denied")
        return _refusal(401, "Unknown key.", "invalid_api_key")
    user = await request.auser()
    if user.is_authenticated and user.is_active and user.is_staff:
        return None
    if user.is_authenticated:
        return _refusal(403, "Detailed health is for staff only.", "permission_denied")
    return _refusal(401, "Log in as staff or present a master key.", "missing_credentials")


def breaker_names() -> tuple[str, ...]:
    """The primary upstream and every extra one, as the resilience layer names its breakers."""
    primary = getattr(settings, "AICC_UPSTREAM_NAME", "litellm")
    return (primary, *(name for name in getattr(settings, "AICC_EXTRA_UPSTREAMS", {}) if name))


@asynccontextmanager
async def deps_from_settings() -> AsyncIterator[HealthDeps]:
    """Short-lived clients: this page is read rarely, and must not share a pool that may be the
    very thing that is stuck."""
    timeout_s = settings.AICC_HEALTH_TIMEOUT_S
    redis = Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        yield HealthDeps(
            redis=redis,
            http=http,
            upstream_url=settings.AICC_UPSTREAM_URL,
            upstream_api_key=settings.AICC_UPSTREAM_API_KEY,
            ollama_url=settings.AICC_OLLAMA_URL.rstrip("/"),
            langfuse_host=settings.AICC_LANGFUSE_HOST.rstrip("/"),
            breaker_names=breaker_names(),
            timeout_s=timeout_s,
        )
    finally:
        await http.close()
        await redis.aclose()


@require_GET
async def health_detailed(request: HttpRequest) -> HttpResponse:
    refusal = await _access_refusal(request)
    if refusal is not None:
        return refusal
    async with deps_from_settings() as deps:
        status, body = await detailed_health(deps)
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    response["cache-control"] = "no-store"
    return response
