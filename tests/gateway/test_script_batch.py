"""Script calls of one event-loop turn share a round trip, and each caller still gets exactly its
own reply or error, against a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.redis_connection import pool_from_url
from gateway.script_batch import ScriptBatcher
from tests.live import RedisServer

pytestmark = pytest.mark.smoke

TIMEOUT_S = 0.5
ECHO = "if ARGV[1] == 'boom' then return redis.error_reply('boom') end return {KEYS[1], ARGV[1]}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    pool = pool_from_url(aioredis.BlockingConnectionPool, redis_url, max_connections=8)
    redis = aioredis.Redis(connection_pool=pool)
    yield redis
    await redis.aclose()


class CountingPool:
    """The real pool, counting checkouts: one checkout is one round trip here."""

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self.pool = pool
        self.checkouts = 0

    async def get_connection(self):  # type: ignore[no-untyped-def]
        self.checkouts += 1
        return await self.pool.get_connection()

    async def release(self, connection) -> None:  # type: ignore[no-untyped-def]
        await self.pool.release(connection)


async def test_calls_of_one_turn_share_one_round_trip(client: aioredis.Redis) -> None:
    pool = CountingPool(client.connection_pool)
    batcher = ScriptBatcher(pool, timeout_s=TIMEOUT_S)  # type: ignore[arg-type]
    script = client.register_script(ECHO)
    await client.script_load(ECHO)

    replies = await asyncio.gather(
        *(batcher.run(script, [f"key-{i}"], [f"arg-{i}"]) for i in range(50))
    )

    assert replies == [[f"key-{i}".encode(), f"arg-{i}".encode()] for i in range(50)]
    assert pool.checkouts == 1


async def test_calls_one_after_another_go_one_by_one(client: aioredis.Redis) -> None:
    pool = CountingPool(client.connection_pool)
    batcher = ScriptBatcher(pool, timeout_s=TIMEOUT_S)  # type: ignore[arg-type]
    script = client.register_script(ECHO)

    for i in range(3):
        assert await batcher.run(script, ["k"], [str(i)]) == [b"k", str(i).encode()]

    assert pool.checkouts == 3


async def test_a_script_error_reaches_only_its_caller(client: aioredis.Redis) -> None:
    batcher = ScriptBatcher(client.connection_pool, timeout_s=TIMEOUT_S)
    script = client.register_script(ECHO)

    replies = await asyncio.gather(
        batcher.run(script, ["a"], ["1"]),
        batcher.run(script, ["b"], ["boom"]),
        batcher.run(script, ["c"], ["3"]),
        return_exceptions=True,
    )

    assert replies[0] == [b"a", b"1"]
    assert isinstance(replies[1], ResponseError) and "boom" in str(replies[1])
    assert replies[2] == [b"c", b"3"]


async def test_scripts_redis_forgot_are_loaded_and_run_once(client: aioredis.Redis) -> None:
    batcher = ScriptBatcher(client.connection_pool, timeout_s=TIMEOUT_S)
    script = client.register_script(ECHO)
    other = client.register_script("return tonumber(ARGV[1]) + 1")
    await client.script_flush()
    await client.set("aicc:test:batch", 0)
    counting = client.register_script("return redis.call('INCR', KEYS[1])")

    replies = await asyncio.gather(
        batcher.run(script, ["a"], ["1"]),
        batcher.run(other, [], [41]),
        batcher.run(counting, ["aicc:test:batch"], []),
    )

    assert replies == [[b"a", b"1"], 42, 1]
    assert await client.get("aicc:test:batch") == b"1"
    assert await client.script_exists(script.sha, other.sha) == [True, True]


async def test_a_caller_that_gives_up_does_not_disturb_the_others(
    client: aioredis.Redis,
) -> None:
    batcher = ScriptBatcher(client.connection_pool, timeout_s=TIMEOUT_S)
    script = client.register_script("redis.call('INCR', KEYS[1]) return ARGV[1]")
    await client.delete("aicc:test:gave-up")

    impatient = asyncio.ensure_future(batcher.run(script, ["aicc:test:gave-up"], ["x"]))
    patient = asyncio.ensure_future(batcher.run(script, ["aicc:test:gave-up"], ["y"]))
    await asyncio.sleep(0)
    impatient.cancel()

    assert await patient == b"y"
    with pytest.raises(asyncio.CancelledError):
        await impatient
    # The given-up call was already in its batch: it ran, as a plain call on its way would have.
    assert await client.get("aicc:test:gave-up") == b"2"


async def test_a_lost_connection_reaches_every_caller_of_the_batch(
    redis_server: RedisServer,
) -> None:
    pool = pool_from_url(
        aioredis.BlockingConnectionPool,
        redis_server.url,
        max_connections=2,
        timeout=0.5,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    client = aioredis.Redis(connection_pool=pool)
    batcher = ScriptBatcher(pool, timeout_s=TIMEOUT_S)
    script = client.register_script(ECHO)
    assert await batcher.run(script, ["k"], ["up"]) == [b"k", b"up"]
    redis_server.stop()

    replies = await asyncio.gather(
        *(batcher.run(script, ["k"], [str(i)]) for i in range(5)), return_exceptions=True
    )

    assert all(isinstance(reply, RedisConnectionError) for reply in replies), replies
    await client.aclose()


async def test_a_redis_that_stops_answering_fails_the_whole_batch_within_the_timeout(
    redis_server: RedisServer,
) -> None:
    # No socket timeout on the connections: the batch's own deadline is what bounds the wait.
    pool = pool_from_url(aioredis.BlockingConnectionPool, redis_server.url, max_connections=2)
    client = aioredis.Redis(connection_pool=pool)
    batcher = ScriptBatcher(pool, timeout_s=TIMEOUT_S)
    script = client.register_script(ECHO)
    assert await batcher.run(script, ["k"], ["up"]) == [b"k", b"up"]
    redis_server.freeze()
    started = time.perf_counter()

    replies = await asyncio.gather(
        *(batcher.run(script, ["k"], [str(i)]) for i in range(5)), return_exceptions=True
    )

    elapsed_s = time.perf_counter() - started
    assert all(isinstance(reply, TimeoutError) for reply in replies), replies
    assert TIMEOUT_S <= elapsed_s < TIMEOUT_S + 0.5
    # The interrupted connection was dropped, not handed back with five replies still to come:
    # the next batch reads its own.
    redis_server.thaw()
    assert await batcher.run(script, ["k"], ["after"]) == [b"k", b"after"]
    redis_server.stop()
    await client.aclose()
