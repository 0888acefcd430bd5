"""The price book of this process: loaded at start-up, reloaded in the background.

Prices change rarely and a new price only applies from its effective date, so a copy refreshed
every `REFRESH_INTERVAL_S` keeps the hot path free of database reads.
"""

from __future__ import annotations

import asyncio

import structlog

from billing.pricing import PriceBook

log = structlog.get_logger(__name__)

REFRESH_INTERVAL_S = 60.0


class PriceCache:
    def __init__(self) -> None:
        self.book = PriceBook([])

    async def load(self) -> None:
        self.book = await PriceBook.aload()

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL_S)
            try:
                await self.load()
            except Exception as exc:  # keep the last good book; the database may be restarting
                log.warning("price_book_refresh_failed", error=type(exc).__name__)
