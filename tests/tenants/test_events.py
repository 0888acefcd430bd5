from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis

from tenants import events, services
from tenants.models import Tenant
from tenants.services import IssuedKey


def _messages(pubsub: Any) -> list[dict[str, Any]]:
    received = []
    while (message := pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
        received.append(json.loads(message["data"]))
    return received


def test_rotation_publishes_the_key_id_and_bumps_the_version_after_commit(
    redis_client: redis.Redis,
    key_a: IssuedKey,
    now: datetime,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(events.CHANNEL)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    version_before = events.current_version()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.api_key_rotate(api_key=key_a.api_key, now=now)
        assert _messages(pubsub) == []  # nothing before commit
    for callback in callbacks:
        callback()

    assert _messages(pubsub) == [{"key_id": key_a.api_key.public_id}]
    assert events.current_version() == version_before + 1
    pubsub.close()


def test_suspending_a_tenant_publishes_its_id(
    redis_client: redis.Redis,
    tenant_a: Tenant,
    now: datetime,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(events.CHANNEL)
    pubsub.get_message(timeout=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.tenant_suspend(tenant=tenant_a, now=now)
    assert _messages(pubsub) == [{"tenant_id": tenant_a.pk}]
    pubsub.close()


def test_revoke_and_expiry_changes_publish_but_creating_a_key_does_not(
    redis_client: redis.Redis,
    tenant_a: Tenant,
    now: datetime,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    from datetime import timedelta

    with django_capture_on_commit_callbacks(execute=True) as created:
        issued = services.api_key_create(tenant=tenant_a, name="k", now=now)
    assert created == []
    with django_capture_on_commit_callbacks(execute=True) as changed:
        services.api_key_set_expiry(
            api_key=issued.api_key, expires_at=now + timedelta(days=1), now=now
        )
        services.api_key_revoke(api_key=issued.api_key, now=now)
    assert len(changed) == 2
    assert events.current_version() == 2
