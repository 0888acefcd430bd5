"""Probe: orjson vs the standard json module on the payloads the hot path handles — a chat
request (decode + re-encode when forwarding) and a chat answer (decode to read `usage`)."""

from __future__ import annotations

import json
import timeit
from typing import Any

import orjson

REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for an internal helpdesk. " * 8},
        {"role": "user", "content": "How do I reset my VPN token? Please answer briefly. " * 4},
        {"role": "assistant", "content": "Open the self-service portal and choose Reset. " * 6},
        {"role": "user", "content": "And if the portal says my token is locked?"},
    ],
    "max_tokens": 256,
    "temperature": 0.2,
    "stream": False,
    "user": "user-1234",
}
ANSWER = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "system_fingerprint": None,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "word " * 200, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 180, "completion_tokens": 200, "total_tokens": 380},
}


def _per_op_us(statement: Any, number: int) -> float:
    best = min(timeit.repeat(statement, number=number, repeat=5))
    return best / number * 1e6


def compare(number: int = 5000) -> list[dict[str, Any]]:
    rows = []
    for name, payload in (("chat request", REQUEST), ("chat answer", ANSWER)):
        text = json.dumps(payload).encode()
        figures = {
            "payload": name,
            "bytes": len(text),
            "json_encode_us": _per_op_us(lambda p=payload: json.dumps(p).encode(), number),
            "orjson_encode_us": _per_op_us(lambda p=payload: orjson.dumps(p), number),
            "json_decode_us": _per_op_us(lambda t=text: json.loads(t), number),
            "orjson_decode_us": _per_op_us(lambda t=text: orjson.loads(t), number),
        }
        rows.append(figures)
    return rows
