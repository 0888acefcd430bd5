"""The hot path's Redis connection packs commands in C, byte for byte as redis-py does."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from gateway.redis_connection import (
    HiredisPackingConnection,
    HiredisPackingSSLConnection,
    HiredisPackingUnixConnection,
    pool_from_url,
)

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


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/3", HiredisPackingConnection),
        ("unix:///tmp/redis.sock?db=3", HiredisPackingUnixConnection),
        ("rediss://127.0.0.1:6380/3", HiredisPackingSSLConnection),
    ],
)
def test_every_url_scheme_gets_a_packing_connection(url: str, expected: type) -> None:
    pool = pool_from_url(aioredis.BlockingConnectionPool, url, max_connections=4)
    assert pool.connection_class is expected
    assert pool.connection_kwargs["db"] == 3
    assert pool.max_connections == 4


async def test_talks_to_a_real_redis(redis_url: str) -> None:
    """On CI a TCP Redis, on the embedded defaults a unix socket."""
    pool = pool_from_url(aioredis.ConnectionPool, redis_url)
    assert pool.connection_class in (HiredisPackingConnection, HiredisPackingUnixConnection)
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.set("aicc:test:packing", "é" * 3, px=10_000)
        assert (await client.get("aicc:test:packing")).decode() == "é" * 3
    finally:
        await client.aclose()
