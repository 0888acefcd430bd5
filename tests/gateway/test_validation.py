"""Every bad input gets its documented 4xx in OpenAI's shape, and nothing reaches the upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenants.services import IssuedKey
from tests.fake_upstream import FakeUpstream
from tests.live import GatewayProcess

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def post(gateway: GatewayProcess, key_a: IssuedKey, fake_upstream: FakeUpstream) -> Iterator[Any]:
    """POST to the gateway with tenant A's key; afterwards assert the upstream saw nothing."""
    fake_upstream.reset()

    def send(
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {"Authorization": f"Bearer {key_a.raw_key}", **(headers or {})}
        return httpx.post(f"{gateway.url}{path}", json=json, content=content, headers=all_headers)

    yield send
    assert fake_upstream.stats()["llm_calls"] == 0


def assert_error(
    response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-correlation-id"]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "", "messages": USER}, "model"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": ["hi"]}, "messages[0]"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 3}]},
            "messages[0].content",
        ),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            },
            "messages[0].content[0].text",
        ),
        ({"model": "gpt-4o-mini", "messages": USER, "temperature": 2.5}, "temperature"),
        ({"model": "gpt-4o-mini", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "gpt-4o-mini", "messages": USER, "top_p": -0.1}, "top_p"),
        ({"model": "gpt-4o-mini", "messages": USER, "n": 0}, "n"),
        ({"model": "gpt-4o-mini", "messages": USER, "n": True}, "n"),
        ({"model": "gpt-4o-mini", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "gpt-4o-mini", "messages": USER, "max_tokens": 1.5}, "max_tokens"),
        ({"model": "gpt-4o-mini", "messages": USER, "stream": "yes"}, "stream"),
    ],
)
def test_bad_chat_requests_are_400_with_the_param(
    post: Any, payload: dict[str, Any], param: str
) -> None:
    assert_error(post(CHAT, json=payload), 400, param=param)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "gpt-4o-mini"}, "prompt"),
        ({"model": "gpt-4o-mini", "prompt": 12}, "prompt"),
        ({"model": "gpt-4o-mini", "prompt": []}, "prompt"),
        ({"model": "gpt-4o-mini", "prompt": "x", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_bad_completion_requests_are_400(post: Any, payload: dict[str, Any], param: str) -> None:
    assert_error(post("/v1/completions", json=payload), 400, param=param)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": ""}, "input"),
        ({"model": "text-embedding-3-small", "input": [1, "a"]}, "input"),
        ({"model": "text-embedding-3-small", "input": [True]}, "input"),
        ({"input": "x"}, "model"),
    ],
)
def test_bad_embedding_requests_are_400(post: Any, payload: dict[str, Any], param: str) -> None:
    assert_error(post("/v1/embeddings", json=payload), 400, param=param)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_unparseable_or_non_object_json_is_400(post: Any, body: bytes) -> None:
    assert_error(
        post(CHAT, content=body, headers={"Content-Type": "application/json"}),
        400,
        code="invalid_json",
    )


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(post: Any, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert_error(post(CHAT, content=b'{"model": "x"}', headers=headers), 415)


def test_oversized_body_by_content_length_is_413(post: Any) -> None:
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        + b"x" * (1024 * 1024)
        + b'"}]}'
    )
    assert_error(post(CHAT, content=body, headers={"Content-Type": "application/json"}), 413)


def test_oversized_chunked_body_is_413_without_reading_it_all(post: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}]}'

    assert_error(post(CHAT, content=chunks(), headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer sk-not-ours"},
        {"Authorization": "Bearer aicc_000000000000_" + "A" * 38},
    ],
)
def test_missing_malformed_or_unknown_keys_are_401(
    gateway: GatewayProcess, fake_upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    fake_upstream.reset()
    response = httpx.post(
        f"{gateway.url}{CHAT}", json={"model": "gpt-4o-mini", "messages": USER}, headers=headers
    )
    assert_error(response, 401, code="invalid_api_key")
    assert fake_upstream.stats()["llm_calls"] == 0


def test_wrong_method_and_unknown_path(gateway: GatewayProcess) -> None:
    assert_error(httpx.get(f"{gateway.url}{CHAT}"), 405)
    assert_error(httpx.post(f"{gateway.url}/v1/nothing-here", json={}), 404)
