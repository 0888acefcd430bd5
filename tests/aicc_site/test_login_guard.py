"""The admin login is guarded against password guessing (django-ratelimit, real Redis cache)."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_repeated_admin_logins_from_one_address_are_refused(redis_client: object) -> None:
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post("/admin/login/", {"username": "admin", "password": f"guess-{i}"}).status_code
        for i in range(11)
    ]
    assert statuses[:10] == [200] * 10  # the form again, with an error
    assert statuses[10] == 403
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert other.post("/admin/login/", {"username": "admin", "password": "x"}).status_code == 200
