"""The hot path's Redis connection packs commands in C, byte for byte as redis-py does."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from gateway.redis_connection import HiredisPackingConnection

pytestmark = pytest.mark.smoke

COMMANDS = [
    ("EVALSHA", "0" * 40, 2, "aicc:rl:key:k1:req", b"raw", -1, 60_000, 1.5, "é"),
    ("CONFIG GET", "maxmemory"),
    (b"XADD", "aicc:usage", "*", b"event", b'{"a":1}'),
    ("SET", "k", memoryview(b"view"), "PX", 100),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_packs_the_same_bytes_as_redis_py(command: tuple) -> None:
    ours = b"".join(bytes(x) for x in HiredisPackingConnection().pack_command(*command))
    theirs = b"".join(bytes(x) for x in Connection().pack_command(*command))
    assert ours == theirs


def test_refuses_what_redis_py_refuses() -> None:
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", None)


async def test_talks_to_a_real_redis(redis_url: str) -> None:
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=HiredisPackingConnection)
    assert pool.connection_class is HiredisPackingConnection
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.set("aicc:test:packing", "é" * 3, px=10_000)
        assert (await client.get("aicc:test:packing")).decode() == "é" * 3
    finally:
        await client.aclose()
