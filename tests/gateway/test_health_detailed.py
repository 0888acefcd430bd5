"""/health/detailed: real Redis (our own redis-server, stopped or frozen on purpose), the real
database, the fake upstream; recent-traffic stats across processes; who may read it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import path
from redis.asyncio import Redis

from gateway import health_views
from gateway.breaker import CircuitBreaker
from gateway.health_detailed import HealthDeps, detailed_health
from gateway.recent_stats import RecentStats, recent_window
from gateway.tasks import HEARTBEAT_KEY, celery_heartbeat
from tenants.services import api_key_create, tenant_create
from tests.fake_upstream import FakeUpstream
from tests.live import RedisServer, free_port

# The view is served from this module's URLconf (pytest.mark.urls) until aicc_site/urls.py has it.
urlpatterns = [path("health/detailed", health_views.health_detailed)]

TIMEOUT_S = 0.5
MASTER_KEY = "master-key-for-tests-0123456789abcdef"


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
    yield session
    await session.close()


def deps_for(redis_client: Redis, http: aiohttp.ClientSession, **overrides: Any) -> HealthDeps:
    options: dict[str, Any] = {"upstream_url": "http://127.0.0.1:1", "timeout_s": TIMEOUT_S}
    return HealthDeps(redis=redis_client, http=http, **(options | overrides))


def short_timeout_redis(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)


async def serve(routes: list[web.RouteDef]) -> tuple[str, web.AppRunner]:
    """A tiny fake upstream (a non-LiteLLM server, or Ollama) on 127.0.0.1."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


# --- the checks -------------------------------------------------------------------------------
@pytest.mark.django_db
async def test_everything_up_is_healthy_and_the_upstream_check_calls_no_llm(
    aredis: Redis, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    llm_calls_before = (await fake_upstream.astats())["llm_calls"]
    celery_heartbeat()

    status, body = await detailed_health(deps_for(aredis, http, upstream_url=fake_upstream.url))

    assert status == 200 and body["status"] == "healthy"
    for name in ("upstream", "redis", "database", "celery"):
        assert body["checks"][name]["status"] == "healthy", body["checks"][name]
        assert body["checks"][name]["latency_ms"] >= 0
    assert body["checks"]["ollama"]["status"] == "disabled"
    assert body["checks"]["langfuse"]["status"] == "disabled"
    assert body["breakers"]["litellm"]["state"] == "closed"
    assert body["recent"]["window_s"] == 300 and body["uptime_seconds"] >= 0
    assert (await fake_upstream.astats())["llm_calls"] == llm_calls_before


@pytest.mark.django_db
async def test_a_stopped_redis_makes_it_unhealthy_within_the_timeout(
    redis_server: RedisServer, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    client = short_timeout_redis(redis_server.url)
    redis_server.stop()
    started = time.perf_counter()

    status, body = await detailed_health(deps_for(client, http, upstream_url=fake_upstream.url))

    elapsed_s = time.perf_counter() - started
    await client.aclose()
    assert status == 503 and body["status"] == "unhealthy"
    assert body["checks"]["redis"]["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["breakers"]["litellm"]["state"] == "unknown"
    assert body["recent"]["status"] == "unavailable"
    assert elapsed_s < TIMEOUT_S + 0.5


@pytest.mark.django_db
async def test_a_frozen_redis_makes_it_unhealthy_within_the_timeout(
    redis_server: RedisServer, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    client = short_timeout_redis(redis_server.url)
    redis_server.freeze()
    started = time.perf_counter()

    status, body = await detailed_health(deps_for(client, http, upstream_url=fake_upstream.url))

    elapsed_s = time.perf_counter() - started
    redis_server.stop()
    await client.aclose()
    assert status == 503 and body["checks"]["redis"]["status"] == "unhealthy"
    assert body["checks"]["celery"]["status"] == "degraded"
    assert elapsed_s < TIMEOUT_S + 0.5


@pytest.mark.django_db
async def test_a_stale_or_missing_celery_heartbeat_is_degraded(
    aredis: Redis, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    deps = deps_for(aredis, http, upstream_url=fake_upstream.url)
    _, missing = await detailed_health(deps)
    ran_at = celery_heartbeat()
    deps.clock = lambda: ran_at + 61

    status, stale = await detailed_health(deps)

    assert missing["checks"]["celery"]["status"] == "degraded"
    assert "no worker heartbeat" in missing["checks"]["celery"]["detail"]
    assert status == 200 and stale["status"] == "degraded"
    assert stale["checks"]["celery"]["detail"] == "last worker heartbeat 61 s ago"
    assert float(await aredis.get(HEARTBEAT_KEY)) == ran_at


@pytest.mark.django_db
async def test_an_upstream_without_liveliness_is_checked_through_its_model_list(
    aredis: Redis, http: aiohttp.ClientSession
) -> None:
    async def models(request: web.Request) -> web.Response:
        is_ours = request.headers.get("Authorization") == "Bearer upstream-key"
        return web.json_response({"data": []}, status=200 if is_ours else 401)

    url, runner = await serve([web.get("/v1/models", models)])
    try:
        _, good = await detailed_health(
            deps_for(aredis, http, upstream_url=url, upstream_api_key="upstream-key")
        )
        status, refused = await detailed_health(
            deps_for(aredis, http, upstream_url=url, upstream_api_key="wrong")
        )
    finally:
        await runner.cleanup()

    assert good["checks"]["upstream"]["status"] == "healthy"
    assert "/v1/models ok" in good["checks"]["upstream"]["detail"]
    assert status == 503 and refused["checks"]["upstream"]["status"] == "unhealthy"
    assert "HTTP 401" in refused["checks"]["upstream"]["detail"]


@pytest.mark.django_db
async def test_an_unreachable_upstream_is_unhealthy(
    aredis: Redis, http: aiohttp.ClientSession
) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    status, body = await detailed_health(deps_for(aredis, http, upstream_url=url))

    assert status == 503 and body["checks"]["upstream"]["status"] == "unhealthy"
    assert "ClientConnectorError" in body["checks"]["upstream"]["detail"]


@pytest.mark.django_db
async def test_ollama_is_optional_so_its_failure_only_degrades(
    aredis: Redis, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.6.2"})

    celery_heartbeat()
    url, runner = await serve([web.get("/api/version", version)])
    try:
        deps = deps_for(aredis, http, upstream_url=fake_upstream.url, ollama_url=url)
        _, up = await detailed_health(deps)
    finally:
        await runner.cleanup()
    status, down = await detailed_health(deps)

    assert up["checks"]["ollama"]["status"] == "healthy"
    assert "0.6.2" in up["checks"]["ollama"]["detail"]
    assert status == 200 and down["status"] == "degraded"
    assert down["checks"]["ollama"]["status"] == "degraded"


@pytest.mark.django_db
async def test_an_open_breaker_is_reported_and_degrades(
    aredis: Redis, http: aiohttp.ClientSession, fake_upstream: FakeUpstream
) -> None:
    celery_heartbeat()
    breaker = CircuitBreaker("litellm", redis=aredis, failure_threshold=1)
    await breaker.record_failure(await breaker.allow())

    status, body = await detailed_health(deps_for(aredis, http, upstream_url=fake_upstream.url))

    assert status == 200 and body["status"] == "degraded"
    assert body["breakers"]["litellm"]["state"] == "open"
    assert body["breakers"]["litellm"]["consecutive_failures"] == 1


# --- recent traffic -----------------------------------------------------------------------------
async def test_recent_traffic_merges_every_process_and_forgets_old_buckets(aredis: Redis) -> None:
    now = 1_700_000_000.0
    first, second = RecentStats(clock=lambda: now), RecentStats(clock=lambda: now - 20)
    ancient = RecentStats(clock=lambda: now - 400)  # outside the 5-minute window
    for index in range(90):
        first.add(latency_ms=40, status=200, is_cache_hit=index < 30)
    for _ in range(8):
        second.add(latency_ms=400, status=502, is_cache_hit=False)
    for _ in range(2):
        second.add(latency_ms=20_000, status=200, is_cache_hit=False)
    ancient.add(latency_ms=1, status=500, is_cache_hit=False)
    for stats in (first, second, ancient):
        await stats.flush(aredis)

    window = await recent_window(aredis, clock=lambda: now)

    assert window["request_count"] == 100
    assert window["error_rate"] == 0.08
    assert window["cache_hit_rate"] == 0.3
    assert 25 < window["latency_p50_ms"] <= 50
    assert 10_000 < window["latency_p99_ms"] <= 30_000


async def test_counts_that_could_not_be_flushed_are_added_later(aredis: Redis) -> None:
    now = 1_700_000_000.0
    stats = RecentStats(clock=lambda: now)
    stats.add(latency_ms=10, status=200, is_cache_hit=False)
    down = short_timeout_redis(f"redis://127.0.0.1:{free_port()}/0")
    await stats.flush(down)
    await down.aclose()
    stats.add(latency_ms=10, status=200, is_cache_hit=False)

    await stats.flush(aredis)

    assert (await recent_window(aredis, clock=lambda: now))["request_count"] == 2


# --- who may read it (the Django view) -----------------------------------------------------------
@pytest.fixture
def view_settings(settings: Any, fake_upstream: FakeUpstream) -> Any:
    settings.AICC_HEALTH_TIMEOUT_S = TIMEOUT_S
    settings.AICC_UPSTREAM_URL = fake_upstream.url
    settings.AICC_OLLAMA_URL = ""
    settings.AICC_LANGFUSE_HOST = ""
    settings.AICC_MASTER_KEYS = [MASTER_KEY]
    return settings


def _error_of(response: Any) -> dict[str, Any]:
    return response.json()["error"]


@pytest.mark.urls(__name__)
def test_no_credentials_is_401(view_settings: Any, db: None) -> None:
    response = Client().get("/health/detailed")
    assert response.status_code == 401
    assert _error_of(response)["type"] == "authentication_error"


@pytest.mark.urls(__name__)
def test_an_ordinary_tenant_key_is_403(view_settings: Any, db: None) -> None:
    tenant = tenant_create(slug="tenant-a", name="Tenant A")
    issued = api_key_create(tenant=tenant, name="key A")

    response = Client().get("/health/detailed", HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")

    assert response.status_code == 403
    assert set(_error_of(response)) == {"message", "type", "param", "code"}
    assert _error_of(response)["type"] == "permission_error"


@pytest.mark.urls(__name__)
def test_a_master_key_reads_detailed_health(view_settings: Any, db: None) -> None:
    response = Client().get("/health/detailed", HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")

    assert response.status_code in (200, 503)
    assert response.json()["checks"]["redis"]["status"] == "healthy"
    assert response["cache-control"] == "no-store"


@pytest.mark.urls(__name__)
def test_a_staff_session_reads_it_and_an_ordinary_user_is_403(view_settings: Any, db: None) -> None:
    users = get_user_model().objects
    staff = users.create_user("operator", is_staff=True)
    member = users.create_user("member")
    staff_client, member_client = Client(), Client()
    staff_client.force_login(staff)
    member_client.force_login(member)

    assert "checks" in staff_client.get("/health/detailed").json()
    assert member_client.get("/health/detailed").status_code == 403


async def test_every_gateway_process_reports_the_policy_version_it_has_in_force(
    aredis: Redis,
) -> None:
    from gateway import policy_status
    from gateway.routing import Router

    router = Router()
    await policy_status.publish(aredis, router)
    await aredis.set(
        policy_status.KEY_PREFIX + "other-host:1",
        orjson.dumps({"process": "other-host:1", "version": "0ld", "loaded_at": "", "path": ""}),
    )
    status = await policy_status.read(aredis)
    assert {p["version"] for p in status["processes"]} == {router.snapshot()["version"], "0ld"}
    assert status["is_consistent"] is False
    (ours,) = [p["process"] for p in status["processes"] if p["process"] != "other-host:1"]
    assert 0 < await aredis.ttl(policy_status.KEY_PREFIX + ours) <= 15  # stopped ones drop out
