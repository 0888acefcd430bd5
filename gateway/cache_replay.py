"""Stored answers and SSE streams, both ways, with no I/O.

The response cache keeps one form of an answer: the non-streamed body (`chat.completion` or
`text_completion`). `assemble_stream_body` turns the SSE events of a finished upstream stream
into that body, so a streamed miss can fill the cache; `replay_as_sse` turns a stored body back
into OpenAI's stream (role chunk, content chunk, finish chunk, optional usage chunk,
`data: [DONE]`), so a hit can answer a streaming request.

Assembly is all or nothing: a stream that did not end in `[DONE]`, carried an error, left a
choice without `finish_reason`, or has a field this module cannot merge (e.g. `logprobs`)
yields None and is simply not cached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETIONS_ENDPOINT = "/v1/completions"
STREAMABLE_ENDPOINTS = frozenset({CHAT_ENDPOINT, COMPLETIONS_ENDPOINT})

_DONE = b"[DONE]"
_SSE_DONE = b"data: [DONE]\n\n"
# Envelope fields copied from the first chunk, in the order OpenAI writes them.
_HEAD_FIELDS = ("id", "object", "created", "model", "system_fingerprint")
_BODY_OBJECT = {CHAT_ENDPOINT: "chat.completion", COMPLETIONS_ENDPOINT: "text_completion"}
_CHUNK_OBJECT = {CHAT_ENDPOINT: "chat.completion.chunk", COMPLETIONS_ENDPOINT: "text_completion"}


class _Unstorable(Exception):
    """The stream cannot be turned into a body we would serve again unchanged."""


# --- stream -> body ------------------------------------------------------------------------


def assemble_stream_body(events: Iterable[bytes], endpoint: str) -> bytes | None:
    """The non-stream body equivalent to a complete SSE stream, or None if it is not storable.

    `events` are whole SSE events as the upstream sent them (the relay's
    `ctx.streamed_events`), including the usage chunk the gateway always asks for.
    """
    if endpoint not in STREAMABLE_ENDPOINTS:
        return None
    try:
        chunks = _data_chunks(events)
        return _assemble(chunks, endpoint)
    except _Unstorable:
        return None


def _data_chunks(events: Iterable[bytes]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    is_done = False
    for event in events:
        # Almost every event is one `data:` line; only the rest needs splitting.
        is_one_line = event.startswith(b"data:") and event.count(b"\n", 0, -2) == 0
        for line in (event,) if is_one_line else event.splitlines():
            if line.startswith(b"event:"):
                raise _Unstorable  # OpenAI streams carry no named events; ours are errors
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == _DONE:
                is_done = True
                continue
            if is_done:
                raise _Unstorable
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise _Unstorable from None
            if not isinstance(chunk, dict) or "error" in chunk:
                raise _Unstorable
            chunks.append(chunk)
    if not is_done or not chunks:
        raise _Unstorable
    return chunks


def _assemble(chunks: list[dict[str, Any]], endpoint: str) -> bytes:
    head = {name: chunks[0].get(name) for name in _HEAD_FIELDS}
    head["object"] = _BODY_OBJECT[endpoint]
    choices: dict[int, _Choice] = {}
    usage: Any = None
    for chunk in chunks:
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index") if isinstance(choice, dict) else None
            if not isinstance(index, int):
                raise _Unstorable
            if choice.get("logprobs") is not None:
                raise _Unstorable  # per-token logprobs are not merged; rare with caching
            merged = choices.get(index)
            if merged is None:
                merged = choices[index] = _Choice(index)
            if endpoint == CHAT_ENDPOINT:
                merged.add_delta(choice.get("delta"))
            else:
                merged.add_text(choice.get("text"))
            if choice.get("finish_reason") is not None:
                merged.finish_reason = choice["finish_reason"]
    if not choices or any(c.finish_reason is None for c in choices.values()):
        raise _Unstorable
    ordered = [choices[index] for index in sorted(choices)]
    body: dict[str, Any] = {
        **head,
        "choices": [
            c.chat_choice() if endpoint == CHAT_ENDPOINT else c.text_choice() for c in ordered
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return orjson.dumps(body)


class _Choice:
    __slots__ = ("finish_reason", "function_call", "index", "role", "text", "tool_calls")

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        # Pieces of the delta's string fields: content, refusal, and provider extras such as
        # `reasoning_content`; joined once at the end (no quadratic concatenation). An empty
        # list means the stream never sent the field: it is null in the body.
        self.text: dict[str, list[str]] = {"content": [], "refusal": []}
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, list[str]] | None = None
        self.finish_reason: str | None = None

    def add_text(self, text: Any) -> None:
        if text is None:
            return
        if not isinstance(text, str):
            raise _Unstorable
        self.text["content"].append(text)

    def add_delta(self, delta: Any) -> None:
        if delta is None:
            return
        if not isinstance(delta, dict):
            raise _Unstorable
        for name, value in delta.items():
            if value is None:
                continue
            if name == "role":
                self.role = value
            elif name == "tool_calls":
                self._add_tool_calls(value)
            elif name == "function_call":
                self._add_function_call(value)
            elif isinstance(value, str):
                self.text.setdefault(name, []).append(value)
            else:
                raise _Unstorable  # audio and other structured deltas: not merged

    def _add_tool_calls(self, calls: Any) -> None:
        if not isinstance(calls, list):
            raise _Unstorable
        for call in calls:
            position = call.get("index") if isinstance(call, dict) else None
            if not isinstance(position, int):
                raise _Unstorable
            merged = self.tool_calls.setdefault(
                position, {"id": None, "type": "function", "name": [], "arguments": []}
            )
            for field in ("id", "type"):
                if call.get(field):
                    merged[field] = call[field]
            function = call.get("function") or {}
            merged["name"].append(function.get("name") or "")
            merged["arguments"].append(function.get("arguments") or "")

    def _add_function_call(self, call: Any) -> None:
        if not isinstance(call, dict):
            raise _Unstorable
        merged = self.function_call or {"name": [], "arguments": []}
        merged["name"].append(call.get("name") or "")
        merged["arguments"].append(call.get("arguments") or "")
        self.function_call = merged

    def chat_choice(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role or "assistant",
            **{name: "".join(parts) if parts else None for name, parts in self.text.items()},
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": call["type"],
                    "function": {
                        "name": "".join(call["name"]),
                        "arguments": "".join(call["arguments"]),
                    },
                }
                for _, call in sorted(self.tool_calls.items())
            ]
        if self.function_call is not None:
            message["function_call"] = {
                name: "".join(parts) for name, parts in self.function_call.items()
            }
        return {
            "index": self.index,
            "message": message,
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }

    def text_choice(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": "".join(self.text["content"]),
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }


# --- body -> stream ------------------------------------------------------------------------


async def replay_as_sse(body: bytes, endpoint: str, *, include_usage: bool) -> AsyncIterator[bytes]:
    """A stored non-stream body as OpenAI's SSE stream, one whole event per item.

    The body was parsed when it was stored, so it is trusted to be a JSON object with choices.
    """
    for event in replay_events(body, endpoint, include_usage=include_usage):
        yield event


def replay_events(body: bytes, endpoint: str, *, include_usage: bool) -> list[bytes]:
    answer = orjson.loads(body)
    head = {name: answer.get(name) for name in _HEAD_FIELDS}
    head["object"] = _CHUNK_OBJECT[endpoint]
    chunks: list[dict[str, Any]] = []
    for choice in answer.get("choices") or ():
        if endpoint == CHAT_ENDPOINT:
            chunks.extend(_chat_choice_chunks(choice))
        else:
            chunks.extend(_text_choice_chunks(choice))
    usage = answer.get("usage")
    if include_usage:
        # OpenAI's shape: `usage: null` on every chunk, then one chunk with no choices.
        chunks = [{**chunk, "usage": None} for chunk in chunks]
        if usage is not None:
            chunks.append({"choices": [], "usage": usage})
    events = [b"data: " + orjson.dumps({**head, **chunk}) + b"\n\n" for chunk in chunks]
    events.append(_SSE_DONE)
    return events


def _chat_choice_chunks(choice: dict[str, Any]) -> list[dict[str, Any]]:
    index = choice.get("index", 0)
    message = dict(choice.get("message") or {})
    role = message.pop("role", None) or "assistant"
    delta: dict[str, Any] = {}
    for name, value in message.items():
        if value is None or value == []:
            continue
        if name == "tool_calls":
            value = [{"index": position, **call} for position, call in enumerate(value)]
        delta[name] = value
    # OpenAI opens with the role and an empty content, or null content before tool calls.
    opening = "" if isinstance(message.get("content"), str) else None
    chunks = [_choice_chunk(index, {"role": role, "content": opening}, None)]
    if delta:
        chunks.append(_choice_chunk(index, delta, None, logprobs=choice.get("logprobs")))
    chunks.append(_choice_chunk(index, {}, choice.get("finish_reason") or "stop"))
    return chunks


def _choice_chunk(
    index: int, delta: dict[str, Any], finish_reason: str | None, *, logprobs: Any = None
) -> dict[str, Any]:
    return {
        "choices": [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ]
    }


def _text_choice_chunks(choice: dict[str, Any]) -> list[dict[str, Any]]:
    index = choice.get("index", 0)
    text_choice = {"index": index, "text": choice.get("text") or "",
                   "logprobs": choice.get("logprobs"), "finish_reason": None}  # fmt: skip
    finish = {"index": index, "text": "", "logprobs": None,
              "finish_reason": choice.get("finish_reason") or "stop"}  # fmt: skip
    return [{"choices": [text_choice]}, {"choices": [finish]}]
