from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tenants import keys, selectors, services
from tenants.models import Tenant
from tenants.selectors import effective_allowed_models
from tenants.services import IssuedKey


def test_credential_record_loads_key_tenant_and_secrets_in_one_query(
    tenant_a: Tenant, now: datetime, django_assert_num_queries: Any
) -> None:
    services.tenant_update(
        tenant=tenant_a, allowed_models=["m1", "m2"], rpm_limit=600, tpm_limit=90000, now=now
    )
    issued = services.api_key_create(
        tenant=tenant_a, name="hot", allowed_models=["m2"], rpm_limit=60, max_concurrency=3,
        expires_at=now + timedelta(days=9), now=now,
    )  # fmt: skip
    rotated = services.api_key_rotate(api_key=issued.api_key, grace=timedelta(hours=1), now=now)

    with django_assert_num_queries(1):
        record = selectors.credential_record(key_public_id=issued.api_key.public_id, now=now)

    assert record is not None
    assert (record.tenant_id, record.tenant_slug, record.is_tenant_active) == (
        tenant_a.pk, "tenant-a", True,
    )  # fmt: skip
    assert (record.key_public_id, record.key_name, record.is_admin) == (
        issued.api_key.public_id, "hot", False,
    )  # fmt: skip
    assert record.allowed_models == frozenset({"m2"})
    assert record.expires_at == now + timedelta(days=9)
    assert not record.is_revoked
    assert record.key_limits == selectors.Limits(rpm=60, tpm=None, max_concurrency=3)
    assert record.tenant_limits == selectors.Limits(rpm=600, tpm=90000, max_concurrency=None)
    assert {s.status for s in record.secrets} == {"active", "deprecated"}
    old, new = keys.digest(issued.raw_key), keys.digest(rotated.raw_key)
    assert record.match(new, now) is not None
    assert record.match(old, now + timedelta(minutes=59)) is not None
    assert record.match(old, now + timedelta(hours=1)) is None
    assert record.match("0" * 64, now) is None


def test_credential_record_keeps_recently_ended_secrets_unmatchable_and_drops_old_ones(
    key_a: IssuedKey, now: datetime
) -> None:
    old_digest = keys.digest(key_a.raw_key)
    services.api_key_rotate(api_key=key_a.api_key, grace=timedelta(minutes=5), now=now)
    ended = now + timedelta(minutes=5)
    record = selectors.credential_record(key_public_id=key_a.api_key.public_id, now=ended)
    assert record is not None and {s.digest for s in record.secrets} >= {old_digest}
    assert record.match(old_digest, ended) is None
    assert all(isinstance(s.secret_id, int) for s in record.secrets)

    long_after = ended + selectors.RECENTLY_ENDED_GRACE
    record = selectors.credential_record(key_public_id=key_a.api_key.public_id, now=long_after)
    assert record is not None and [s.status for s in record.secrets] == ["active"]


def test_credential_record_of_a_revoked_key_says_revoked_with_no_secrets(
    key_a: IssuedKey, now: datetime, django_assert_num_queries: Any
) -> None:
    services.api_key_revoke(api_key=key_a.api_key, now=now)
    with django_assert_num_queries(1):
        record = selectors.credential_record(key_public_id=key_a.api_key.public_id, now=now)
    assert record is not None and record.is_revoked and record.secrets == ()
    assert record.match(keys.digest(key_a.raw_key), now) is None


def test_credential_record_of_an_unknown_key_is_none(db: None) -> None:
    assert selectors.credential_record(key_public_id="000000000000") is None


def test_credential_record_reflects_a_suspended_tenant(key_a: IssuedKey, now: datetime) -> None:
    services.tenant_suspend(tenant=key_a.api_key.tenant, now=now)
    record = selectors.credential_record(key_public_id=key_a.api_key.public_id, now=now)
    assert record is not None and not record.is_tenant_active


@pytest.mark.parametrize(
    ("tenant_models", "key_models", "expected"),
    [
        ([], [], None),
        ([], ["a"], {"a"}),
        (["a", "b"], [], {"a", "b"}),
        (["a", "b"], ["b", "c"], {"b"}),
        (["a"], ["c"], set()),
    ],
)
def test_effective_models_are_the_intersection_with_empty_meaning_unrestricted(
    tenant_models: list[str], key_models: list[str], expected: set[str] | None
) -> None:
    result = effective_allowed_models(tenant_models=tenant_models, key_models=key_models)
    assert result == (None if expected is None else frozenset(expected))


def test_key_listing_is_scoped_to_the_tenant(key_a: IssuedKey, key_b: IssuedKey) -> None:
    listed = list(selectors.api_key_list(tenant=key_a.api_key.tenant))
    assert [k.public_id for k in listed] == [key_a.api_key.public_id]
    assert listed[0].active_hint == keys.display_hint(key_a.raw_key)
    assert (
        selectors.api_key_get(tenant=key_a.api_key.tenant, key_public_id=key_b.api_key.public_id)
        is None
    )
