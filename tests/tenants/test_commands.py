from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from tenants import keys, selectors
from tenants.models import APIKey, APIKeySecret, AuditEntry, Tenant
from tenants.services import IssuedKey


def _run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def _every_stored_value() -> str:
    """Every row of every table, as text: what a database dump would reveal."""
    dumped = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            dumped.append(repr(cursor.fetchall()))
    return "\n".join(dumped)


@pytest.mark.django_db
def test_created_key_is_the_last_line_works_and_is_never_stored() -> None:
    _run("create_tenant", "acme", "--name", "Acme Inc")
    lines = _run(
        "create_api_key", "acme", "--name", "ci", "--models", "m1,m2", "--expires-in", "30d",
        "--rpm", "60", "--tpm", "5000", "--max-concurrency", "4",
    )  # fmt: skip

    raw_key = lines[-1]
    parsed = keys.parse(raw_key)
    assert parsed is not None
    record = selectors.credential_record(key_public_id=parsed.key_id)
    assert record is not None and record.match(parsed.digest, timezone.now()) is not None
    assert record.allowed_models == frozenset({"m1", "m2"})
    assert (record.key_limits.rpm, record.key_limits.tpm, record.key_limits.max_concurrency) == (
        60, 5000, 4,
    )  # fmt: skip
    key = APIKey.objects.get(public_id=parsed.key_id)
    remaining = key.expires_at - timezone.now()
    assert timedelta(days=29, hours=23) < remaining <= timedelta(days=30)
    assert Tenant.objects.get(slug="acme").name == "Acme Inc"

    stored = _every_stored_value()
    assert raw_key not in stored
    assert raw_key[len("aicc_") + 13 : -6] not in stored  # the secret part on its own
    assert parsed.digest in stored  # what is stored instead


def test_rotate_prints_the_new_secret_last_and_keeps_the_old_for_the_grace(
    key_a: IssuedKey,
) -> None:
    before = timezone.now()
    lines = _run("rotate_api_key", key_a.api_key.public_id, "--grace", "2h")
    new = keys.parse(lines[-1])
    assert new is not None and new.key_id == key_a.api_key.public_id
    assert APIKeySecret.objects.get(digest=new.digest).status == "active"
    old = APIKeySecret.objects.get(digest=keys.digest(key_a.raw_key))
    assert (
        before + timedelta(hours=2) <= old.deprecated_until <= timezone.now() + timedelta(hours=2)
    )
    assert lines[-1] not in _every_stored_value()


def test_rotate_refuses_a_grace_beyond_30_days_and_bad_durations(key_a: IssuedKey) -> None:
    with pytest.raises(CommandError, match="30 days"):
        _run("rotate_api_key", key_a.api_key.public_id, "--grace", "31d")
    with pytest.raises(CommandError, match="invalid duration"):
        _run("rotate_api_key", key_a.api_key.public_id, "--grace", "soon")


def test_revoke_command_revokes_and_audits(key_a: IssuedKey) -> None:
    _run("revoke_api_key", key_a.api_key.public_id)
    assert APIKey.objects.get(pk=key_a.api_key.pk).revoked_at is not None
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert entry.details["via"] == "cli" and entry.actor is None


def test_list_keys_of_one_tenant_shows_no_secrets(key_a: IssuedKey, key_b: IssuedKey) -> None:
    output = "\n".join(_run("list_api_keys", "tenant-a"))
    assert key_a.api_key.public_id in output and key_b.api_key.public_id not in output
    assert keys.display_hint(key_a.raw_key) in output and key_a.raw_key not in output
    everything = "\n".join(_run("list_api_keys"))
    assert key_a.api_key.public_id in everything and key_b.api_key.public_id in everything


def test_unknown_tenant_and_key_are_command_errors(db: None) -> None:
    with pytest.raises(CommandError, match="no tenant"):
        _run("create_api_key", "nope", "--name", "x")
    with pytest.raises(CommandError, match="no API key"):
        _run("revoke_api_key", "000000000000")
