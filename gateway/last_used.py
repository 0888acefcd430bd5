"""`last_used_at` of API keys, written off the hot path.

Requests only note the key id in memory; a background task writes the noted keys every
`FLUSH_INTERVAL_S` per process in one UPDATE per 500 keys (tenants.services.
api_keys_touch_last_used skips rows touched in the last minute), so a busy key costs a share
of one UPDATE a minute, not one per request, and a thousand keys do not cost a thousand.
"""

from __future__ import annotations

import asyncio

import structlog
from asgiref.sync import sync_to_async

from tenants.services import api_keys_touch_last_used

log = structlog.get_logger(__name__)

FLUSH_INTERVAL_S = 30.0


class LastUsedRecorder:
    def __init__(self) -> None:
        self._pending: set[str] = set()

    def note(self, key_public_id: str) -> None:
        self._pending.add(key_public_id)

    async def flush(self) -> None:
        pending, self._pending = self._pending, set()
        if pending:
            await sync_to_async(api_keys_touch_last_used, thread_sensitive=False)(
                key_public_ids=pending
            )

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception as exc:  # the database may be restarting; try again next round
                log.warning("last_used_flush_failed", error=type(exc).__name__)
