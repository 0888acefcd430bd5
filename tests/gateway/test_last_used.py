"""Keys noted by requests get their last_used_at written by the background flush."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from gateway.last_used import LastUsedRecorder
from tenants.models import APIKey, Tenant
from tenants.services import IssuedKey, api_key_create

pytestmark = pytest.mark.smoke


async def test_a_flush_writes_every_noted_key_once(tenant_a: Tenant) -> None:
    issued = [await _create_key(tenant_a, f"k{i}") for i in range(3)]
    recorder = LastUsedRecorder()
    for item in (*issued, issued[0]):
        recorder.note(item.api_key.public_id)

    await recorder.flush()

    touched = {
        key.public_id
        async for key in APIKey.objects.filter(tenant=tenant_a, last_used_at__isnull=False)
    }
    assert touched == {item.api_key.public_id for item in issued}
    await recorder.flush()  # nothing pending: no query, no error


async def _create_key(tenant: Tenant, name: str) -> IssuedKey:
    return await sync_to_async(api_key_create)(tenant=tenant, name=name)
