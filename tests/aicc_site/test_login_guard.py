"""The admin login is guarded against password guessing (django-ratelimit, real Redis cache)."""

from __future__ import annotations

import django_ratelimit.core
import pytest
from django.test import Client


@pytest.mark.django_db
def test_repeated_admin_logins_from_one_address_are_refused(
    redis_client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # django-ratelimit counts in fixed windows; hold its clock still so the eleven attempts
    # cannot straddle the end of one (slow password hashing made that happen).
    monkeypatch.setattr(django_ratelimit.core.time, "time", lambda: 1_795_694_400.0)
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post("/admin/login/", {"username": "admin", "password": f"guess-{i}"}).status_code
        for i in range(11)
    ]
    assert statuses[:10] == [200] * 10  # the form again, with an error
    assert statuses[10] == 403
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert other.post("/admin/login/", {"username": "admin", "password": "x"}).status_code == 200
