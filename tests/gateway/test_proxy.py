"""End to end through a live gateway process with the official openai SDK (sync and async)."""

from __future__ import annotations

import statistics
import time

import httpx
import openai
import orjson
import pytest

from tenants.services import IssuedKey
from tests.fake_upstream import FakeUpstream
from tests.live import UPSTREAM_API_KEY, GatewayProcess

pytestmark = pytest.mark.smoke


@pytest.fixture
def client(gateway: GatewayProcess, key_a: IssuedKey) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key_a.raw_key, max_retries=0)


@pytest.fixture
def aclient(gateway: GatewayProcess, key_a: IssuedKey) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key_a.raw_key, max_retries=0)


def test_chat_completion_returns_the_upstream_answer_with_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    assert completion.choices[0].message.content.startswith("echo: hello there")
    assert completion.usage is not None and completion.usage.prompt_tokens == 2


def test_chat_stream_arrives_chunk_by_chunk_and_hides_the_usage_chunk(
    client: openai.OpenAI,
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "one two"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: one two")
    assert all(c.usage is None for c in chunks)


def test_chat_stream_keeps_the_usage_chunk_when_the_client_asks(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 3


async def test_async_client_chat_stream_and_non_stream(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "async hello"}], max_tokens=4
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    stream = await aclient.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "async stream"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("echo: async stream")


def test_completions_embeddings_and_models(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-4o-mini", prompt="say this")
    assert completion.choices[0].text.startswith("echo: say this")
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    assert "gpt-4o-mini" in {model.id for model in client.models.list()}
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_unknown_fields_pass_through_untouched(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reset()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        tools=tools,
        seed=7,
        logprobs=True,
        response_format={"type": "json_object"},
        extra_body={"vendor_field": {"nested": [1, 2]}},
    )
    sent = fake_upstream.stats()["recent"][-1]["body"]
    assert sent["tools"] == tools and sent["seed"] == 7 and sent["logprobs"] is True
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["vendor_field"] == {"nested": [1, 2]}


def test_the_client_key_is_never_forwarded_and_the_gateway_key_is(
    client: openai.OpenAI, fake_upstream: FakeUpstream, key_a: IssuedKey
) -> None:
    fake_upstream.reset()
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    headers = fake_upstream.stats()["recent"][-1]["headers"]
    assert headers["authorization"] == f"Bearer {UPSTREAM_API_KEY}"
    assert key_a.raw_key not in str(fake_upstream.stats())


def test_cookies_the_upstream_sets_are_not_sent_back_on_later_requests(
    fake_upstream: FakeUpstream, key_a: IssuedKey, redis_url: str
) -> None:
    # By a host name: aiohttp's default cookie jar ignores cookies of bare IP addresses.
    upstream_url = fake_upstream.url.replace("127.0.0.1", "localhost")
    gateway = GatewayProcess(upstream_url=upstream_url, redis_url=redis_url).start()
    try:
        fake_upstream.reset()
        for _ in range(2):
            response = httpx.post(
                f"{gateway.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key_a.raw_key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            )
            assert response.status_code == 200
            assert "set-cookie" not in response.headers  # nor does the client get it
    finally:
        gateway.stop()
    recent = fake_upstream.stats()["recent"]
    assert len(recent) == 2 and all("cookie" not in sent["headers"] for sent in recent)


def test_correlation_id_is_accepted_returned_and_forwarded(
    gateway: GatewayProcess, key_a: IssuedKey, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reset()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key_a.raw_key}", "X-Correlation-ID": "trace-42"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.headers["x-correlation-id"] == "trace-42"
    assert fake_upstream.stats()["recent"][-1]["headers"]["x-correlation-id"] == "trace-42"


def test_unsafe_correlation_id_is_replaced_with_a_uuid(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={"X-Correlation-ID": "bad;id" * 30})
    assert response.status_code == 401
    assert len(response.headers["x-correlation-id"]) == 36


@pytest.mark.parametrize("header", ["api-key", "x-api-key"])
def test_key_is_accepted_in_alternative_headers(
    gateway: GatewayProcess, key_a: IssuedKey, header: str
) -> None:
    response = httpx.get(f"{gateway.url}/v1/models", headers={header: key_a.raw_key})
    assert response.status_code == 200


def test_upstream_error_status_and_body_pass_through(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="fault-500", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"  # type: ignore[index]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="fault-429", messages=[{"role": "user", "content": "x"}]
        )


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="fault-slow", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # type: ignore[index]


@pytest.mark.parametrize("model", ["fault-reset", "fault-malformed"])
def test_upstream_reset_or_garbage_is_502(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502


def test_unreachable_upstream_is_502(
    django_db_setup: None, key_a: IssuedKey, redis_url: str
) -> None:
    process = GatewayProcess(upstream_url="http://127.0.0.1:9", redis_url=redis_url).start()
    try:
        response = httpx.post(
            f"{process.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key_a.raw_key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
        )
    finally:
        process.stop()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


def test_broken_upstream_stream_ends_with_an_sse_error_event(
    gateway: GatewayProcess, key_a: IssuedKey
) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key_a.raw_key}"},
        json={
            "model": "fault-broken-sse",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        timeout=10,
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert body.count("data: {") >= 3
    assert "event: error" in body and "upstream_stream_broken" in body


def _first_chunk_delay_and_pause(url: str, headers: dict[str, str]) -> tuple[float, float]:
    """How long the first chunk took from the upstream's write to us, and the gap to the next."""
    arrivals: list[float] = []
    sent_at = 0.0
    with httpx.stream(
        "POST",
        url,
        headers=headers,
        json={
            "model": "fault-slow-chunk",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.time())
                if len(arrivals) == 1:
                    sent_at = orjson.loads(line[6:])["x_fake_sent_at"]
                if len(arrivals) == 2:
                    break
    return arrivals[0] - sent_at, arrivals[1] - arrivals[0]


def test_streams_are_not_buffered(gateway: GatewayProcess, key_a: IssuedKey) -> None:
    """Upstream sends its first chunk, pauses 500 ms, sends the rest: the client gets the first
    chunk within 5 ms of the upstream sending it (median of 7), long before the pause ends."""
    url = f"{gateway.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key_a.raw_key}"}
    for _ in range(2):  # warm the key cache, connection pools and lazy imports
        _first_chunk_delay_and_pause(url, headers)
    runs = [_first_chunk_delay_and_pause(url, headers) for _ in range(7)]
    assert all(pause >= 0.4 for _, pause in runs), runs
    assert statistics.median(delay for delay, _ in runs) < 0.005, runs
