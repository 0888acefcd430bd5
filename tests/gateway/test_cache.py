"""The response cache on real Redis: keys, decisions, entries, stream assembly and SSE replay.

Stream assembly is checked against real answers of the fake upstream (stream and non-stream
for the same deterministic prompt); replay is read back with the official openai SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
import redis.asyncio as aioredis

from gateway.cache import (
    CACHE_HEADER,
    THREAD_ASSEMBLY_MIN_EVENTS,
    CachedAnswer,
    CacheStatus,
    ResponseCache,
    cache_key,
    decide,
)
from gateway.cache_replay import assemble_stream_body, replay_as_sse, replay_events
from gateway.context import RequestContext, Usage
from gateway.http import Response, StreamResponse
from gateway.runtime import Runtime
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
TENANT_A = 101
TENANT_B = 202
TTL_S = 3600


def chat_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "name three prime numbers"}],
        "temperature": 0,
        **overrides,
    }


def answer_for(tenant_id: int, body: bytes = b'{"id":"x","choices":[]}') -> CachedAnswer:
    return CachedAnswer(
        tenant_id=tenant_id,
        endpoint=CHAT,
        served_model="gpt-4o-mini",
        body=body,
        prompt_tokens=4,
        completion_tokens=8,
        stored_at=1_000.0,
    )


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(1_000.0)


@pytest.fixture
def cache(aredis: aioredis.Redis, clock: FixedClock) -> ResponseCache:
    return ResponseCache(aredis, ttl_s=TTL_S, max_entry_bytes=256 * 1024, clock=clock)


# --- keys --------------------------------------------------------------------------------------


def test_key_ignores_field_order() -> None:
    payload = chat_payload(max_tokens=20, seed=7)
    reordered = dict(reversed(list(payload.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in payload["messages"]]
    assert list(reordered["messages"][0]) == ["content", "role"]
    assert cache_key(TENANT_A, CHAT, payload) == cache_key(TENANT_A, CHAT, reordered)


@pytest.mark.parametrize(
    "delivery",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "end-user-42"},
        {"metadata": {"team": "x"}, "store": False},
        {"n": 1},
        {"temperature": 0.0},
    ],
)
def test_key_ignores_fields_that_do_not_change_the_answer(delivery: dict[str, Any]) -> None:
    assert cache_key(TENANT_A, CHAT, chat_payload()) == cache_key(
        TENANT_A, CHAT, chat_payload(**delivery)
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.2},
        {"messages": [{"role": "user", "content": "name four prime numbers"}]},
        {"max_tokens": 5},
        {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ],
)
def test_key_changes_with_fields_that_change_the_answer(change: dict[str, Any]) -> None:
    assert cache_key(TENANT_A, CHAT, chat_payload()) != cache_key(
        TENANT_A, CHAT, chat_payload(**change)
    )


def test_key_differs_by_endpoint_and_names_the_tenant() -> None:
    payload = {"model": "gpt-4o-mini", "prompt": "hi", "temperature": 0}
    chat_key = cache_key(TENANT_A, CHAT, payload)
    completion_key = cache_key(TENANT_A, COMPLETIONS, payload)
    assert chat_key != completion_key
    assert chat_key.startswith(f"aicc:cache:{TENANT_A}:chat:")
    assert completion_key.startswith(f"aicc:cache:{TENANT_A}:cmpl:")


def test_same_prompt_of_tenants_a_and_b_has_different_keys_and_different_hashes() -> None:
    key_a = cache_key(TENANT_A, CHAT, chat_payload())
    key_b = cache_key(TENANT_B, CHAT, chat_payload())
    assert key_a.startswith(f"aicc:cache:{TENANT_A}:") and key_b.startswith(
        f"aicc:cache:{TENANT_B}:"
    )
    # The tenant is hashed too, so a key rebuilt under another prefix never matches.
    assert key_a.rsplit(":", 1)[1] != key_b.rsplit(":", 1)[1]


def test_key_holds_no_prompt_text() -> None:
    assert "prime" not in cache_key(TENANT_A, CHAT, chat_payload())


# --- decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "payload", "is_tenant_enabled", "header", "expected"),
    [
        (CHAT, chat_payload(), True, None, (True, True, "MISS")),
        (CHAT, chat_payload(temperature=0.0), True, None, (True, True, "MISS")),
        (CHAT, chat_payload(temperature=0.7), True, None, (False, False, "BYPASS")),
        (CHAT, {**chat_payload(), "temperature": None}, True, None, (False, False, "BYPASS")),
        (CHAT, {"model": "m", "messages": []}, True, None, (False, False, "BYPASS")),
        (CHAT, chat_payload(temperature=False), True, None, (False, False, "BYPASS")),
        (CHAT, chat_payload(n=1), True, None, (True, True, "MISS")),
        (CHAT, chat_payload(n=3), True, None, (False, False, "BYPASS")),
        (CHAT, chat_payload(), False, None, (False, False, "BYPASS")),
        (CHAT, chat_payload(), True, "no-cache", (False, True, "BYPASS")),
        (CHAT, chat_payload(), True, "No-Store", (False, False, "BYPASS")),
        (CHAT, chat_payload(), True, "no-cache, no-store", (False, False, "BYPASS")),
        (CHAT, chat_payload(), True, "please-cache", (True, True, "MISS")),
        (CHAT, chat_payload(temperature=1), True, "no-cache", (False, False, "BYPASS")),
        (COMPLETIONS, {"model": "m", "prompt": "p", "temperature": 0}, True, None,
         (True, True, "MISS")),
        (EMBEDDINGS, {"model": "e", "input": "x"}, True, None, (True, True, "MISS")),
        (EMBEDDINGS, {"model": "e", "input": "x"}, False, None, (False, False, "BYPASS")),
        (EMBEDDINGS, {"model": "e", "input": "x"}, True, "no-store", (False, False, "BYPASS")),
        ("/v1/models", {"model": "m", "temperature": 0}, True, None, (False, False, "BYPASS")),
    ],
)  # fmt: skip
def test_decide_table(
    endpoint: str,
    payload: dict[str, Any],
    is_tenant_enabled: bool,
    header: str | None,
    expected: tuple[bool, bool, str],
) -> None:
    policy = decide(payload, endpoint, is_tenant_enabled=is_tenant_enabled, header_value=header)
    assert (policy.is_lookup, policy.is_store, policy.status.value) == expected


# --- entries in Redis --------------------------------------------------------------------------


async def test_stored_answer_comes_back_with_the_same_bytes_and_the_ttl(
    cache: ResponseCache, aredis: aioredis.Redis
) -> None:
    key = cache_key(TENANT_A, CHAT, chat_payload())
    body = orjson.dumps({"id": "chatcmpl-1", "choices": [{"index": 0}], "note": "é\n"})
    assert await cache.put(key, answer_for(TENANT_A, body))
    found = await cache.get(key, TENANT_A)
    assert found == answer_for(TENANT_A, body)
    assert TTL_S - 5 <= await aredis.ttl(key) <= TTL_S


async def test_oversized_answer_is_not_stored(aredis: aioredis.Redis) -> None:
    cache = ResponseCache(aredis, ttl_s=TTL_S, max_entry_bytes=1024)
    key = cache_key(TENANT_A, CHAT, chat_payload())
    assert not await cache.put(key, answer_for(TENANT_A, b'{"x":"' + b"a" * 1024 + b'"}'))
    assert await aredis.exists(key) == 0


async def test_entry_of_another_tenant_under_a_tenants_key_is_refused(
    cache: ResponseCache, aredis: aioredis.Redis
) -> None:
    key_a = cache_key(TENANT_A, CHAT, chat_payload())
    await aredis.set(key_a, answer_for(TENANT_B).encode())  # forged: B's answer at A's key
    assert await cache.get(key_a, TENANT_A) is None
    assert await cache.get(key_a, TENANT_B) is None  # nor does B read anything at A's key


async def test_tenant_b_cannot_read_tenant_a_key_even_when_given_it(
    cache: ResponseCache,
) -> None:
    key_a = cache_key(TENANT_A, CHAT, chat_payload())
    await cache.put(key_a, answer_for(TENANT_A))
    assert await cache.get(key_a, TENANT_B) is None
    assert await cache.get(key_a, TENANT_A) is not None


async def test_put_refuses_a_key_of_another_tenant(cache: ResponseCache) -> None:
    with pytest.raises(ValueError, match="own tenant"):
        await cache.put(cache_key(TENANT_B, CHAT, chat_payload()), answer_for(TENANT_A))


async def test_garbage_entry_is_a_miss(cache: ResponseCache, aredis: aioredis.Redis) -> None:
    key = cache_key(TENANT_A, CHAT, chat_payload())
    await aredis.set(key, b"not an entry")
    assert await cache.get(key, TENANT_A) is None


async def test_repeat_of_tenant_a_hits_and_same_prompt_of_tenant_b_misses(
    cache: ResponseCache,
) -> None:
    def lookup(tenant_id: int) -> Any:
        return cache.lookup(tenant_id=tenant_id, endpoint=CHAT, payload=chat_payload(),
                            is_tenant_enabled=True, header_value=None)  # fmt: skip

    first = await lookup(TENANT_A)
    assert first.status == CacheStatus.MISS
    body = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
    usage = Usage(prompt_tokens=4, completion_tokens=8)
    assert await cache.store(first, body, usage=usage, served_model="gpt-4o-mini")
    repeat = await lookup(TENANT_A)
    assert repeat.status == CacheStatus.HIT and repeat.header() == (CACHE_HEADER, "HIT")
    assert repeat.hit is not None and repeat.hit.body == body
    assert (repeat.hit.prompt_tokens, repeat.hit.completion_tokens) == (4, 8)
    other = await lookup(TENANT_B)
    assert other.status == CacheStatus.MISS and other.hit is None


async def test_no_cache_skips_the_read_but_stores_and_no_store_does_neither(
    cache: ResponseCache, aredis: aioredis.Redis
) -> None:
    args: dict[str, Any] = {"tenant_id": TENANT_A, "endpoint": CHAT, "payload": chat_payload(),
            "is_tenant_enabled": True}  # fmt: skip
    await cache.put(cache_key(TENANT_A, CHAT, chat_payload()), answer_for(TENANT_A, b'{"old":1}'))
    refresh = await cache.lookup(**args, header_value="no-cache")
    assert refresh.hit is None and refresh.status == CacheStatus.BYPASS
    await cache.store(refresh, b'{"new":1}', usage=None, served_model="gpt-4o-mini")
    no_store = await cache.lookup(**args, header_value="no-store")
    assert not await cache.store(no_store, b'{"newer":1}', usage=None, served_model="m")
    again = await cache.lookup(**args, header_value=None)
    assert again.hit is not None and again.hit.body == b'{"new":1}'


async def test_answer_of_a_fallback_model_is_not_stored_under_the_routed_models_key(
    cache: ResponseCache, aredis: aioredis.Redis
) -> None:
    lookup = await cache.lookup(tenant_id=TENANT_A, endpoint=CHAT, payload=chat_payload(),
                                is_tenant_enabled=True, header_value=None)  # fmt: skip
    assert not await cache.store(lookup, b"{}", usage=None, served_model="llama3-local")
    assert await aredis.dbsize() == 0
    assert await cache.store(lookup, b"{}", usage=None, served_model="gpt-4o-mini")


async def test_switched_off_cache_neither_reads_nor_stores(aredis: aioredis.Redis) -> None:
    cache = ResponseCache(aredis, ttl_s=TTL_S, max_entry_bytes=4096, is_enabled=False)
    lookup = await cache.lookup(tenant_id=TENANT_A, endpoint=CHAT, payload=chat_payload(),
                                is_tenant_enabled=True, header_value=None)  # fmt: skip
    assert lookup.status == CacheStatus.BYPASS and lookup.key is None
    assert not await cache.store(lookup, b"{}", usage=None, served_model="m")
    assert await aredis.dbsize() == 0


async def test_purge_removes_only_that_tenants_entries(
    cache: ResponseCache, aredis: aioredis.Redis
) -> None:
    for index in range(3):
        payload = chat_payload(seed=index)
        await cache.put(cache_key(TENANT_A, CHAT, payload), answer_for(TENANT_A))
        await cache.put(cache_key(TENANT_B, CHAT, payload), answer_for(TENANT_B))
    assert await cache.purge_tenant(TENANT_A) == 3
    assert len([key async for key in aredis.scan_iter(match="aicc:cache:*")]) == 3
    assert await cache.get(cache_key(TENANT_B, CHAT, chat_payload(seed=0)), TENANT_B)


# --- Redis down --------------------------------------------------------------------------------


@pytest.fixture
async def silent_redis() -> AsyncIterator[aioredis.Redis]:
    """A Redis client on a port that accepts connections and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    yield client
    await client.aclose()
    server.close()


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "silent"])
async def test_redis_down_is_a_miss_and_a_skipped_store_without_error(
    failure: str, silent_redis: aioredis.Redis
) -> None:
    client = (
        silent_redis
        if failure == "silent"
        else aioredis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1)
    )
    cache = ResponseCache(client, ttl_s=TTL_S, max_entry_bytes=4096, timeout_s=0.05)
    started = asyncio.get_running_loop().time()
    lookup = await cache.lookup(tenant_id=TENANT_A, endpoint=CHAT, payload=chat_payload(),
                                is_tenant_enabled=True, header_value=None)  # fmt: skip
    assert lookup.hit is None and lookup.status == CacheStatus.MISS
    assert not await cache.store(lookup, b"{}", usage=None, served_model="m")
    assert asyncio.get_running_loop().time() - started < 1.0
    if failure == "refused":
        await client.aclose()


# --- streams from the fake upstream ------------------------------------------------------------


async def upstream_answers(
    fake_upstream: FakeUpstream, path: str, payload: dict[str, Any]
) -> tuple[list[bytes], bytes]:
    """The fake upstream's stream (usage asked for, as the relay asks) split into whole SSE
    events, and its non-stream answer to the same request."""
    streamed = {**payload, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=fake_upstream.url) as client:
        async with client.stream("POST", path, content=orjson.dumps(streamed)) as response:
            raw = b"".join([chunk async for chunk in response.aiter_bytes()])
        reply = await client.post(path, content=orjson.dumps(payload))
    assert response.status_code == 200 and reply.status_code == 200
    events = [event + b"\n\n" for event in raw.split(b"\n\n") if event]
    return events, reply.content


def without_identity(body: bytes) -> dict[str, Any]:
    answer = orjson.loads(body)
    del answer["id"], answer["created"]
    return answer


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (CHAT, chat_payload(max_tokens=12)),
        (CHAT, chat_payload(n=2)),
        (COMPLETIONS, {"model": "gpt-4o-mini", "prompt": "count with me", "temperature": 0}),
    ],
)
async def test_assembled_stream_equals_the_non_stream_answer(
    fake_upstream: FakeUpstream, path: str, payload: dict[str, Any]
) -> None:
    events, non_stream_body = await upstream_answers(fake_upstream, path, payload)
    assembled = assemble_stream_body(events, path)
    assert assembled is not None
    assert without_identity(assembled) == without_identity(non_stream_body)


async def test_stream_that_did_not_finish_is_not_assembled(fake_upstream: FakeUpstream) -> None:
    events, _ = await upstream_answers(fake_upstream, CHAT, chat_payload())
    assert assemble_stream_body(events[:-1], CHAT) is None  # no [DONE]
    finish_chunk = -3  # ..., finish chunk, usage chunk, [DONE]
    assert assemble_stream_body(events[:finish_chunk] + events[-2:], CHAT) is None
    error = b'event: error\ndata: {"error":{"message":"broke"}}\n\n'
    assert assemble_stream_body([*events[:3], error], CHAT) is None


@pytest.mark.parametrize("max_tokens", [8, THREAD_ASSEMBLY_MIN_EVENTS + 100])
async def test_streamed_miss_is_stored_and_serves_a_later_non_stream_request(
    cache: ResponseCache, fake_upstream: FakeUpstream, max_tokens: int
) -> None:
    payload = chat_payload(max_tokens=max_tokens)
    events, non_stream_body = await upstream_answers(fake_upstream, CHAT, payload)
    args: dict[str, Any] = {"tenant_id": TENANT_A, "endpoint": CHAT, "is_tenant_enabled": True,
            "header_value": None}  # fmt: skip
    miss = await cache.lookup(payload={**payload, "stream": True}, **args)
    usage = Usage(prompt_tokens=3, completion_tokens=8)
    assert await cache.store_stream(miss, events, usage=usage, served_model="gpt-4o-mini")
    hit = (await cache.lookup(payload=payload, **args)).hit
    assert hit is not None
    assert without_identity(hit.body) == without_identity(non_stream_body)
    assert len(events) > max_tokens  # one event per word, so the long case takes the thread


# --- replay, read by the openai SDK ------------------------------------------------------------


def sdk_serving(events: Callable[[], AsyncIterator[bytes]]) -> openai.AsyncOpenAI:
    """The SDK's own client and stream parser, with its HTTP transport answering our bytes."""

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=events())

    transport = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url="http://cache.test/v1", http_client=transport, max_retries=0
    )


@pytest.mark.parametrize("include_usage", [False, True])
async def test_replayed_chat_answer_is_a_valid_stream_for_the_openai_sdk(
    fake_upstream: FakeUpstream, include_usage: bool
) -> None:
    _, body = await upstream_answers(fake_upstream, CHAT, chat_payload(max_tokens=10))
    stored = orjson.loads(body)
    client = sdk_serving(lambda: replay_as_sse(body, CHAT, include_usage=include_usage))
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.id for chunk in chunks} == {stored["id"]}
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == stored["choices"][0]["message"]["content"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.model_dump(exclude_none=True) == stored["usage"]
    else:
        assert all(chunk.usage is None for chunk in chunks)


async def test_replayed_completion_is_a_valid_stream_for_the_openai_sdk(
    fake_upstream: FakeUpstream,
) -> None:
    payload = {"model": "gpt-4o-mini", "prompt": "one two three", "temperature": 0}
    _, body = await upstream_answers(fake_upstream, COMPLETIONS, payload)
    client = sdk_serving(lambda: replay_as_sse(body, COMPLETIONS, include_usage=True))
    stream = await client.completions.create(model="gpt-4o-mini", prompt="x", stream=True)
    chunks = [chunk async for chunk in stream]
    assert (
        "".join(c.choices[0].text for c in chunks if c.choices)
        == orjson.loads(body)["choices"][0]["text"]
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def tool_call_stream() -> list[bytes]:
    """A tool-calling answer streamed the way OpenAI streams one (arguments in pieces)."""
    head = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_1"}  # fmt: skip
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": None,
          "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, None),
        ({}, "tool_calls"),
    ]  # fmt: skip
    choices = [
        [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        for delta, finish in deltas
    ]
    events = [b"data: " + orjson.dumps({**head, "choices": c}) + b"\n\n" for c in choices]
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    return [*events, b"data: [DONE]\n\n"]


async def test_tool_call_stream_survives_assembly_and_replay_through_the_sdk() -> None:
    body = assemble_stream_body(tool_call_stream(), CHAT)
    assert body is not None
    message = orjson.loads(body)["choices"][0]["message"]
    assert message["content"] is None
    function = {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert message["tool_calls"] == [{"id": "call_1", "type": "function", "function": function}]
    client = sdk_serving(lambda: replay_as_sse(body, CHAT, include_usage=True))
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    ) as stream:
        completion = await stream.get_final_completion()
    replayed = completion.choices[0]
    assert replayed.finish_reason == "tool_calls"
    assert replayed.message.tool_calls is not None
    call = replayed.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1", "get_weather", '{"city":"Oslo"}',
    )  # fmt: skip
    assert completion.usage is not None and completion.usage.total_tokens == 14


def test_every_replayed_item_is_one_whole_sse_event_ending_in_done() -> None:
    body = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant",
                                      "content": "line one\nline two"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 4}})  # fmt: skip
    events = replay_events(body, CHAT, include_usage=True)
    assert events[-1] == b"data: [DONE]\n\n"
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        assert event.count(b"\n") == 2  # one data line: newlines in content stay escaped


# --- answering a hit ---------------------------------------------------------------------------


def context_for(payload: dict[str, Any], endpoint: str) -> RequestContext:
    ctx = RequestContext(correlation_id="corr-1", runtime=Runtime(), endpoint=endpoint)
    ctx.use_payload(payload)
    return ctx


def test_hit_for_a_non_stream_request_is_the_stored_body_as_a_zero_cost_hit(
    cache: ResponseCache, clock: FixedClock
) -> None:
    body = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
    ctx = context_for(chat_payload(), CHAT)
    clock.now = 1_042.9
    response = cache.respond(ctx, answer_for(TENANT_A, body))
    assert isinstance(response, Response)
    assert (response.status, response.body) == (200, body)
    assert ("age", "42") in response.headers
    assert ctx.is_cache_hit and ctx.served_model == "gpt-4o-mini"
    usage = ctx.final_usage()
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, 0)


async def test_hit_for_a_stream_request_replays_sse_and_marks_the_first_byte(
    cache: ResponseCache,
) -> None:
    body = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant",
                                      "content": "hi"}, "finish_reason": "stop"}]})  # fmt: skip
    ctx = context_for(chat_payload(stream=True), CHAT)
    response = cache.respond(ctx, answer_for(TENANT_A, body))
    assert isinstance(response, StreamResponse)
    events = [event async for event in response.chunks]
    assert events == replay_events(body, CHAT, include_usage=False)
    assert ctx.ttfb_ms is not None and ctx.is_cache_hit
