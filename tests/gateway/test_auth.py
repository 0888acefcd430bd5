"""Authentication on the hot path: key format, cache, revocation across processes, abuse guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from gateway.auth import CredentialCache, authenticate
from gateway.errors import GatewayError
from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_create, api_key_revoke, tenant_suspend
from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}


def chat(url: str, raw_key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {raw_key}"}, json=CHAT_BODY
    )


@pytest.fixture
def two_gateways(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_url: str
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    first = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
    second = GatewayProcess(upstream_url=fake_upstream.url, redis_url=redis_url).start()
    yield first, second
    first.stop()
    second.stop()


@pytest.mark.parametrize(
    "raw_key",
    [
        "aicc_short",
        "sk-proj-something",
        "aicc_abcdefghijkl_" + "A" * 38,  # well formed, wrong checksum
        "aicc_ABCDEFGHIJKL_" + "A" * 38,  # upper-case key id
    ],
)
def test_malformed_or_bad_checksum_key_is_refused_with_zero_queries(
    db: None, django_assert_num_queries: object, raw_key: str
) -> None:
    cache = CredentialCache()
    with django_assert_num_queries(0), pytest.raises(GatewayError) as caught:  # type: ignore[operator]
        async_to_sync(authenticate)({"authorization": f"Bearer {raw_key}"}, cache)
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"


def test_a_cached_key_costs_no_query(
    transactional_db: None, key_a: IssuedKey, django_assert_num_queries: object
) -> None:
    cache = CredentialCache()
    headers = {"authorization": f"Bearer {key_a.raw_key}"}
    async_to_sync(authenticate)(headers, cache)
    with django_assert_num_queries(0):  # type: ignore[operator]
        caller = async_to_sync(authenticate)(headers, cache)
    assert caller.tenant_id == key_a.api_key.tenant_id


class CountingLoader:
    """Stands in for the database read: counts loads, each waits until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.failure: Exception | None = None

    async def __call__(self, key_public_id: str) -> Any:
        self.calls.append(key_public_id)
        number = len(self.calls)
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return f"record {number} of {key_public_id}"


def held_cache() -> tuple[CountingLoader, CredentialCache]:
    loader = CountingLoader()
    return loader, CredentialCache(load=loader)


async def test_concurrent_misses_of_one_key_share_one_load() -> None:
    loader, cache = held_cache()
    waiting = [asyncio.ensure_future(cache.get("abc")) for _ in range(50)]
    waiting.append(asyncio.ensure_future(cache.get("other")))
    await asyncio.sleep(0.01)
    loader.release.set()
    found = await asyncio.gather(*waiting)
    assert found[:50] == ["record 1 of abc"] * 50
    assert sorted(loader.calls) == ["abc", "other"]
    assert await cache.get("abc") == "record 1 of abc"  # cached now
    assert len(loader.calls) == 2


async def test_a_load_under_way_when_the_cache_is_cleared_is_not_kept() -> None:
    """It may have read the key before the revocation that cleared the cache."""
    loader, cache = held_cache()
    before = asyncio.ensure_future(cache.get("abc"))
    await asyncio.sleep(0.01)
    cache.clear()
    after = asyncio.ensure_future(cache.get("abc"))  # must not join the older load
    await asyncio.sleep(0.01)
    loader.release.set()
    assert await before == "record 1 of abc"
    assert await after == "record 2 of abc"
    assert await cache.get("abc") == "record 2 of abc"
    assert len(loader.calls) == 2


async def test_a_waiter_that_goes_away_leaves_the_load_to_the_others() -> None:
    loader, cache = held_cache()
    leaving = asyncio.ensure_future(cache.get("abc"))
    staying = asyncio.ensure_future(cache.get("abc"))
    await asyncio.sleep(0.01)
    leaving.cancel()
    loader.release.set()
    assert await staying == "record 1 of abc"
    assert leaving.cancelled()
    assert len(loader.calls) == 1


async def test_a_failed_load_reaches_every_waiter_and_the_next_request_tries_again() -> None:
    loader, cache = held_cache()
    loader.failure = ConnectionError("database down")
    waiting = [asyncio.ensure_future(cache.get("abc")) for _ in range(3)]
    await asyncio.sleep(0.01)
    loader.release.set()
    for outcome in await asyncio.gather(*waiting, return_exceptions=True):
        assert isinstance(outcome, ConnectionError)
    loader.failure = None
    assert await cache.get("abc") == "record 2 of abc"


def test_revocation_is_refused_by_every_process_within_one_second(
    two_gateways: tuple[GatewayProcess, GatewayProcess], key_a: IssuedKey
) -> None:
    for process in two_gateways:
        assert chat(process.url, key_a.raw_key).status_code == 200  # now cached in both
    api_key_revoke(api_key=key_a.api_key)
    revoked_at = time.monotonic()
    pending = set(two_gateways)
    while pending and time.monotonic() - revoked_at < 1.0:
        for process in list(pending):
            if chat(process.url, key_a.raw_key).status_code == 401:
                pending.discard(process)
    assert not pending, "a process still accepted the revoked key after 1 s"


def test_suspended_tenant_is_403(
    gateway: GatewayProcess, key_a: IssuedKey, tenant_a: Tenant
) -> None:
    assert chat(gateway.url, key_a.raw_key).status_code == 200
    tenant_suspend(tenant=tenant_a)
    deadline = time.monotonic() + 1.0
    while chat(gateway.url, key_a.raw_key).status_code != 403:
        assert time.monotonic() < deadline
    response = chat(gateway.url, key_a.raw_key)
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_repeated_invalid_keys_from_one_address_get_429(
    django_db_setup: None, fake_upstream: FakeUpstream, redis_url: str, redis_client: object
) -> None:
    process = GatewayProcess(
        upstream_url=fake_upstream.url,
        redis_url=redis_url,
        env={"AICC_AUTH_FAILURES_PER_MINUTE": "3"},
    ).start()
    try:
        # The guard counts in fixed one-minute windows: don't start just before one ends.
        while time.time() % 60 > 50:
            time.sleep(0.5)
        bad_key = "aicc_abcdefghijkl_" + "B" * 38
        statuses = [chat(process.url, bad_key).status_code for _ in range(5)]
        throttled = chat(process.url, bad_key)
    finally:
        process.stop()
    assert statuses == [401, 401, 401, 429, 429]
    assert throttled.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60


def test_a_valid_key_still_works_alongside(
    transactional_db: None, tenant_a: Tenant, gateway: GatewayProcess
) -> None:
    issued = api_key_create(tenant=tenant_a, name="second")
    assert chat(gateway.url, issued.raw_key).status_code == 200


def test_rotated_key_is_accepted_until_its_grace_period_ends(
    transactional_db: None, key_a: IssuedKey
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from gateway.auth import deprecation_headers
    from tenants.services import api_key_rotate

    rotated_at = timezone.now()
    new = api_key_rotate(api_key=key_a.api_key, grace=timedelta(hours=1), now=rotated_at)
    deadline = rotated_at + timedelta(hours=1)
    cache = CredentialCache()
    old_headers = {"authorization": f"Bearer {key_a.raw_key}"}
    new_headers = {"authorization": f"Bearer {new.raw_key}"}

    before = async_to_sync(authenticate)(old_headers, cache, now=deadline - timedelta(seconds=1))
    sent = dict(deprecation_headers(before))
    assert sent["sunset"] == deadline.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert (
        sent["deprecation"]
        == f"@{int(new.api_key.secrets.latest('created_at').created_at.timestamp())}"
    )
    with pytest.raises(GatewayError) as caught:
        async_to_sync(authenticate)(old_headers, cache, now=deadline + timedelta(seconds=1))
    assert caught.value.status == 401 and caught.value.code == "api_key_expired"
    for moment in (rotated_at, deadline - timedelta(seconds=1), deadline + timedelta(seconds=1)):
        current = async_to_sync(authenticate)(new_headers, cache, now=moment)
        assert deprecation_headers(current) == []
        # Same key id, so usage history and limits stay with it.
        assert current.key_id == before.key_id == key_a.api_key.pk
        assert current.record.key_limits == before.record.key_limits


def test_a_deprecated_key_gets_deprecation_and_sunset_headers_and_a_warning(
    gateway: GatewayProcess, key_a: IssuedKey
) -> None:
    from datetime import timedelta

    from tenants.services import api_key_rotate

    new = api_key_rotate(api_key=key_a.api_key, grace=timedelta(hours=2))
    deadline = time.monotonic() + 1.0
    response = chat(gateway.url, key_a.raw_key)
    while "sunset" not in response.headers:
        assert time.monotonic() < deadline, "rotation not seen within 1 s"
        response = chat(gateway.url, key_a.raw_key)
    assert response.status_code == 200
    assert response.headers["deprecation"].startswith("@")
    assert "deprecation" not in chat(gateway.url, new.raw_key).headers
    assert '"deprecated_key_used"' in gateway.log()
    assert key_a.raw_key not in gateway.log()
