from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tenants import keys, services
from tenants.audit import Actor
from tenants.models import APIKey, APIKeySecret, AuditEntry, Membership, Tenant
from tenants.services import IssuedKey
from tenants.services import api_keys as api_keys_module


def _usable_digests(issued: IssuedKey, at: datetime) -> set[str]:
    return {s.digest for s in issued.api_key.secrets.all() if s.is_usable(at)}


def test_created_key_parses_and_only_its_digest_is_stored(key_a: IssuedKey) -> None:
    parsed = keys.parse(key_a.raw_key)
    assert parsed is not None and parsed.key_id == key_a.api_key.public_id
    secret = key_a.api_key.secrets.get()
    assert secret.digest == parsed.digest != key_a.raw_key
    assert secret.status == APIKeySecret.Status.ACTIVE


def test_rotated_key_is_accepted_until_its_grace_period_ends(
    key_a: IssuedKey, now: datetime
) -> None:
    old_digest = keys.digest(key_a.raw_key)
    rotated = services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(hours=2), now=now)

    assert rotated.api_key.public_id == key_a.api_key.public_id
    new_digest = keys.digest(rotated.raw_key)
    old = APIKeySecret.objects.get(digest=old_digest)
    assert old.status == APIKeySecret.Status.DEPRECATED
    assert old.deprecated_until == now + timedelta(hours=2)
    just_before = now + timedelta(hours=2) - timedelta(microseconds=1)
    assert _usable_digests(rotated, just_before) == {old_digest, new_digest}
    assert _usable_digests(rotated, now + timedelta(hours=2)) == {new_digest}


def test_rotation_grace_defaults_to_24_hours(key_a: IssuedKey, now: datetime) -> None:
    services.api_key_rotate(api_key=key_a.api_key, now=now)
    old = APIKeySecret.objects.get(digest=keys.digest(key_a.raw_key))
    assert old.deprecated_until == now + timedelta(hours=24)


def test_rotation_grace_of_30_days_is_the_maximum(key_a: IssuedKey, now: datetime) -> None:
    services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(days=30), now=now)
    with pytest.raises(ValidationError):
        services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(days=30, seconds=1), now=now)
    with pytest.raises(ValidationError):
        services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(seconds=-1), now=now)


def test_rotating_again_never_extends_an_earlier_deadline(key_a: IssuedKey, now: datetime) -> None:
    first_digest = keys.digest(key_a.raw_key)
    second = services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(hours=1), now=now)
    later = now + timedelta(minutes=30)
    services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(days=7), now=later)

    first = APIKeySecret.objects.get(digest=first_digest)
    second_secret = APIKeySecret.objects.get(digest=keys.digest(second.raw_key))
    assert first.deprecated_until == now + timedelta(hours=1)
    assert second_secret.deprecated_until == later + timedelta(days=7)
    assert key_a.api_key.secrets.filter(status=APIKeySecret.Status.ACTIVE).count() == 1


def test_using_a_key_does_not_extend_any_deadline(key_a: IssuedKey, now: datetime) -> None:
    services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(hours=1), now=now)
    assert services.api_keys_touch_last_used(key_public_ids=[key_a.api_key.public_id], now=now)
    old = APIKeySecret.objects.get(digest=keys.digest(key_a.raw_key))
    assert old.deprecated_until == now + timedelta(hours=1)


def test_zero_grace_ends_the_old_secret_at_once(key_a: IssuedKey, now: datetime) -> None:
    rotated = services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(0), now=now)
    assert _usable_digests(rotated, now) == {keys.digest(rotated.raw_key)}


def test_revoke_ends_every_secret_immediately(key_a: IssuedKey, now: datetime) -> None:
    rotated = services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(days=3), now=now)
    revoked = services.api_key_revoke(api_key=key_a.api_key, now=now)

    assert revoked.revoked_at == now
    assert _usable_digests(rotated, now) == set()
    assert set(revoked.secrets.values_list("status", flat=True)) == {"revoked"}
    with pytest.raises(ValidationError):
        services.api_key_rotate(api_key=revoked, now=now)


def test_revoking_twice_keeps_the_first_time_and_audits_once(
    key_a: IssuedKey, now: datetime
) -> None:
    services.api_key_revoke(api_key=key_a.api_key, now=now)
    again = services.api_key_revoke(api_key=key_a.api_key, now=now + timedelta(hours=1))
    assert again.revoked_at == now
    assert AuditEntry.objects.filter(action="api_key.revoke").count() == 1


def test_set_expiry_extends_and_rejects_the_past(key_a: IssuedKey, now: datetime) -> None:
    extended = services.api_key_set_expiry(
        api_key=key_a.api_key, expires_at=now + timedelta(days=60), now=now
    )
    assert extended.expires_at == now + timedelta(days=60)
    assert not extended.is_expired(now + timedelta(days=59))
    assert extended.is_expired(now + timedelta(days=60))
    with pytest.raises(ValidationError):
        services.api_key_set_expiry(api_key=key_a.api_key, expires_at=now, now=now)


def test_key_models_must_lie_within_the_tenant_models(tenant_a: Tenant, now: datetime) -> None:
    services.tenant_update(tenant=tenant_a, allowed_models=["gpt-a", "gpt-b"], now=now)
    with pytest.raises(ValidationError):
        services.api_key_create(tenant=tenant_a, name="k", allowed_models=["gpt-c"], now=now)
    issued = services.api_key_create(tenant=tenant_a, name="k", allowed_models=["gpt-b"], now=now)
    assert issued.api_key.allowed_models == ["gpt-b"]


def test_limits_must_be_positive(tenant_a: Tenant, now: datetime) -> None:
    with pytest.raises(ValidationError):
        services.api_key_create(tenant=tenant_a, name="k", rpm_limit=0, now=now)
    issued = services.api_key_create(
        tenant=tenant_a, name="k", rpm_limit=60, tpm_limit=1000, max_concurrency=2, now=now
    )
    key = issued.api_key
    assert (key.rpm_limit, key.tpm_limit, key.max_concurrency) == (60, 1000, 2)


def test_touch_last_used_writes_at_most_once_a_minute(key_a: IssuedKey, now: datetime) -> None:
    public_id = key_a.api_key.public_id
    assert services.api_keys_touch_last_used(key_public_ids=[public_id], now=now) == 1
    assert (
        services.api_keys_touch_last_used(
            key_public_ids=[public_id], now=now + timedelta(seconds=59)
        )
        == 0
    )
    assert (
        services.api_keys_touch_last_used(
            key_public_ids=[public_id], now=now + timedelta(seconds=60)
        )
        == 1
    )
    key_a.api_key.refresh_from_db()
    assert key_a.api_key.last_used_at == now + timedelta(seconds=60)


def test_suspend_and_reactivate_are_idempotent_and_audited(tenant_a: Tenant, now: datetime) -> None:
    services.tenant_suspend(tenant=tenant_a, now=now)
    services.tenant_suspend(tenant=tenant_a, now=now)
    assert Tenant.objects.get(pk=tenant_a.pk).status == Tenant.Status.SUSPENDED
    services.tenant_reactivate(tenant=tenant_a, now=now)
    actions = list(AuditEntry.objects.filter(tenant=tenant_a).values_list("action", flat=True))
    assert actions.count("tenant.suspend") == 1 and actions.count("tenant.reactivate") == 1


def test_every_lifecycle_step_writes_an_audit_entry_without_secrets(
    tenant_a: Tenant, admin_a: object, now: datetime
) -> None:
    actor = Actor(user=admin_a, via="api")  # type: ignore[arg-type]
    issued = services.api_key_create(tenant=tenant_a, name="audited", actor=actor, now=now)
    rotated = services.api_key_rotate(api_key=issued.api_key, actor=actor, now=now)
    services.api_key_set_expiry(
        api_key=issued.api_key, expires_at=now + timedelta(days=1), actor=actor, now=now
    )
    services.api_key_revoke(api_key=issued.api_key, actor=actor, now=now)

    entries = AuditEntry.objects.filter(tenant=tenant_a, target_id=issued.api_key.public_id)
    assert [e.action for e in entries.order_by("id")] == [
        "api_key.create", "api_key.rotate", "api_key.set_expiry", "api_key.revoke",
    ]  # fmt: skip
    assert {e.actor_id for e in entries} == {admin_a.pk}  # type: ignore[attr-defined]
    dumped = str(list(entries.values("details")))
    for raw in (issued.raw_key, rotated.raw_key):
        assert raw not in dumped
        assert keys.parse(raw).digest not in dumped  # type: ignore[union-attr]


def test_the_last_owner_cannot_be_removed_or_demoted(tenant_a: Tenant, admin_a: object) -> None:
    owner = Membership.objects.get(user=admin_a)
    services.membership_set_role(membership=owner, role=Membership.Role.OWNER)
    with pytest.raises(ValidationError):
        services.membership_remove(membership=owner)
    with pytest.raises(ValidationError):
        services.membership_set_role(membership=owner, role=Membership.Role.VIEWER)


def test_a_user_is_a_member_of_a_tenant_once(tenant_a: Tenant, admin_a: object) -> None:
    with pytest.raises(ValidationError):
        services.membership_add(tenant=tenant_a, user=admin_a)  # type: ignore[arg-type]


def test_touch_last_used_writes_many_keys_in_batches(
    tenant_a: Tenant,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    monkeypatch.setattr(api_keys_module, "TOUCH_BATCH_SIZE", 2)
    issued = [services.api_key_create(tenant=tenant_a, name=f"k{i}", now=now) for i in range(3)]
    public_ids = [item.api_key.public_id for item in issued]

    with django_assert_num_queries(2):  # 3 keys in batches of 2
        assert services.api_keys_touch_last_used(key_public_ids=public_ids, now=now) == 3

    assert set(
        APIKey.objects.filter(public_id__in=public_ids).values_list("last_used_at", flat=True)
    ) == {now}
