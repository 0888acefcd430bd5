"""The fake upstream over real HTTP: OpenAI SDK compatibility, determinism, faults, control API."""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.fake_upstream import FakeUpstream, fake_upstream_fixture

# Same fixture the suite's conftest exposes; defined here too so this module runs on its own.
fake_upstream = pytest.fixture(scope="session")(fake_upstream_fixture)

QUICK_DELAY_S = 0.3


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture(scope="module")
def quick_upstream() -> Iterator[FakeUpstream]:
    """Short fault delays and the LiteLLM cost header, so timing tests stay fast."""
    env = {"AICC_FAKE_SLOW_S": str(QUICK_DELAY_S), "AICC_FAKE_CHUNK_PAUSE_S": str(QUICK_DELAY_S)}
    with FakeUpstream(litellm_cost=True, env=env) as started:
        yield started


def sdk(upstream: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.api_base, api_key="sk-client", max_retries=0)


def chat_body(model: str = "gpt-4o-mini", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "a b c d e"}], **extra}


def test_chat_completion_echoes_the_last_user_message_and_counts_words(upstream):
    completion = sdk(upstream).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "hello there world"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == (
        "echo: hello there world echo: hello there world"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, 8)
    assert completion.usage.total_tokens == 16


def test_max_tokens_sets_the_reply_length_and_n_the_number_of_choices(upstream):
    completion = sdk(upstream).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=5, n=2
    )
    assert [c.message.content for c in completion.choices] == ["echo: x echo: x echo:"] * 2
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_chat_stream_without_include_usage_sends_one_chunk_per_word_and_no_usage(upstream):
    chunks = list(
        sdk(upstream).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello there"}],
            max_tokens=4,
            stream=True,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == [
        "echo:", " hello", " there", " echo:"
    ]  # fmt: skip
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk_without_choices(upstream):
    with httpx.stream(
        "POST",
        f"{upstream.api_base}/chat/completions",
        json=chat_body(stream=True, max_tokens=3, stream_options={"include_usage": True}),
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}


def test_text_completions_answer_plain_and_streamed_with_the_same_text(upstream):
    client = sdk(upstream)
    plain = client.completions.create(model="llama3-local", prompt="say something", max_tokens=4)
    assert plain.object == "text_completion"
    assert plain.choices[0].text == "echo: say something echo:"
    assert plain.usage is not None and plain.usage.prompt_tokens == 2
    streamed = client.completions.create(
        model="llama3-local",
        prompt="say something",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_embeddings_are_deterministic_unit_vectors_in_float_and_base64(upstream):
    client = sdk(upstream)
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    plain = client.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
    )
    assert [len(item.embedding) for item in decoded.data] == [8, 8]
    for from_base64, from_float in zip(decoded.data, plain.data, strict=True):
        as_float32 = struct.unpack("<8f", struct.pack("<8f", *from_float.embedding))
        assert from_base64.embedding == pytest.approx(list(as_float32))
        assert sum(v * v for v in from_float.embedding) == pytest.approx(1.0)
    assert decoded.data[0].embedding != decoded.data[1].embedding
    assert decoded.usage.prompt_tokens == 3
    wide = client.embeddings.create(model="text-embedding-3-small", input="a b", dimensions=32)
    assert len(wide.data[0].embedding) == 32


def test_models_lists_the_fixed_catalogue_and_unknown_models_are_404(upstream):
    client = sdk(upstream)
    assert {m.id for m in client.models.list()} == {
        "gpt-4o-mini", "gpt-4o", "llama3-local", "text-embedding-3-small"
    }  # fmt: skip
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as missing_model:
        client.models.retrieve("gpt-5-imaginary")
    assert missing_model.value.code == "model_not_found"


def test_completion_for_an_unknown_model_is_an_openai_404(upstream):
    response = httpx.post(f"{upstream.api_base}/chat/completions", json=chat_body("nope"))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `nope` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_liveness_answers_on_both_spellings(upstream):
    for path in ("/health/liveliness", "/health/liveness"):
        response = httpx.get(f"{upstream.url}{path}")
        assert (response.status_code, response.text) == (200, "I'm alive!")


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("fault-500", openai.InternalServerError),
        ("fault-429", openai.RateLimitError),
        ("fault-400", openai.BadRequestError),
        ("fault-reset", openai.APIConnectionError),
    ],
)
def test_fault_models_fail_the_way_their_name_says(upstream, model, error):
    with pytest.raises(error):
        sdk(upstream).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )


def test_fault_malformed_answers_200_with_a_body_that_is_not_json(upstream):
    response = httpx.post(
        f"{upstream.api_base}/chat/completions", json=chat_body("fault-malformed")
    )
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_fault_broken_sse_sends_three_chunks_then_drops_the_connection(upstream):
    received: list[str] = []
    url = f"{upstream.api_base}/chat/completions"
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", url, json=chat_body("fault-broken-sse", stream=True)) as response,
    ):
        received.extend(line for line in response.iter_lines() if line)
    assert len(received) == 3
    assert "[DONE]" not in "".join(received)


def test_fault_slow_delays_a_complete_answer(quick_upstream):
    started = time.monotonic()
    completion = sdk(quick_upstream).chat.completions.create(
        model="fault-slow", messages=[{"role": "user", "content": "hi"}]
    )
    assert time.monotonic() - started >= QUICK_DELAY_S
    assert completion.choices[0].message.content == "echo: hi echo: hi echo: hi echo: hi"


def test_fault_slow_chunk_pauses_after_the_first_chunk(quick_upstream):
    stream = sdk(quick_upstream).chat.completions.create(
        model="fault-slow-chunk", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    arrivals = [time.monotonic() for _chunk in stream]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps[0] >= QUICK_DELAY_S * 0.9
    assert max(gaps[1:]) < QUICK_DELAY_S / 2


def test_litellm_cost_flag_adds_a_cost_header_from_the_token_counts(quick_upstream, upstream):
    body = chat_body(max_tokens=10)  # 5 prompt words, 10 reply words
    with_cost = httpx.post(f"{quick_upstream.api_base}/chat/completions", json=body)
    assert float(with_cost.headers["x-litellm-response-cost"]) == pytest.approx(5e-6 + 20e-6)
    without = httpx.post(f"{upstream.api_base}/chat/completions", json=body)
    assert "x-litellm-response-cost" not in without.headers


def test_control_fault_applies_to_the_next_n_requests_of_any_model(upstream):
    upstream.set_fault("500", count=2)
    url = f"{upstream.api_base}/chat/completions"
    statuses = [httpx.post(url, json=chat_body()).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_control_fault_without_count_lasts_until_reset(upstream):
    upstream.set_fault("fault-429", count=None)
    url = f"{upstream.api_base}/embeddings"
    body = {"model": "text-embedding-3-small", "input": "x"}
    assert [httpx.post(url, json=body).status_code for _ in range(3)] == [429] * 3
    upstream.reset()
    assert httpx.post(url, json=body).status_code == 200


def test_control_fault_rejects_an_unknown_mode(upstream):
    with pytest.raises(httpx.HTTPStatusError):
        upstream.set_fault("explode")


def test_stats_record_requests_with_selected_headers_and_body_but_not_control_calls(upstream):
    httpx.post(
        f"{upstream.api_base}/chat/completions",
        json=chat_body(),
        headers={"Authorization": "Bearer sk-client", "X-Correlation-Id": "corr-7", "X-Other": "1"},
    )
    httpx.get(f"{upstream.api_base}/models")
    upstream.stats()
    stats = upstream.stats()
    assert stats["total"] == 2
    assert stats["llm_calls"] == 1
    assert stats["by_path"] == {"/v1/chat/completions": 1, "/v1/models": 1}
    first = stats["recent"][0]
    assert first["headers"] == {
        "authorization": "Bearer sk-client",
        "x-correlation-id": "corr-7",
        "content-type": "application/json",
    }
    assert first["body"] == chat_body()
    upstream.reset()
    assert upstream.stats()["total"] == 0


async def test_async_control_helpers_drive_the_same_state(upstream):
    await upstream.aset_fault("400", count=1)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{upstream.api_base}/chat/completions", json=chat_body())
    assert response.status_code == 400
    stats = await upstream.astats()
    assert stats["llm_calls"] == 1 and stats["fault"]["mode"] is None
    await upstream.areset()
    assert (await upstream.astats())["total"] == 0


def test_stop_ends_the_subprocess_and_frees_the_port():
    started = FakeUpstream().start()
    url = started.url
    started.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health/liveness")
