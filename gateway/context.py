"""Everything one request learns on its way through the gateway, for the response, the meter
and the log."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from gateway import tokens

if TYPE_CHECKING:
    from gateway.auth import Caller
    from gateway.cache import CacheLookup
    from gateway.metering import Ticket
    from gateway.runtime import Runtime


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_count(details.get("cached_tokens") if isinstance(details, dict) else 0),
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(slots=True)
class RequestContext:
    correlation_id: str
    runtime: Runtime
    endpoint: str = ""
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    caller: Caller | None = None
    payload: dict[str, Any] | None = None
    requested_model: str | None = None
    served_model: str | None = None
    route_reason: str = ""
    # The routing decision as the request log line shows it (gateway.routing).
    route_fields: dict[str, Any] = field(default_factory=dict)
    is_streamed: bool = False
    is_cache_hit: bool = False
    # Forwarded while its admission ran (gateway.early_forward).
    is_forwarded_early: bool = False
    cache: CacheLookup | None = None
    status: int = 0
    usage: Usage | None = None
    # Raw SSE events relayed, kept only to count tokens if the upstream never sends usage.
    streamed_events: list[bytes] = field(default_factory=list)
    upstream_latency_ms: float | None = None
    ttfb_ms: float | None = None
    upstream_cost: str | None = None
    ticket: Ticket | None = None
    cost_usd: Decimal | None = None  # known once the meter has settled
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    # Work that must not keep the client waiting (e.g. storing the answer in the cache): run
    # by gateway.app once the response is out.
    after_response: list[Coroutine[Any, Any, Any]] = field(default_factory=list)

    def use_payload(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.requested_model = payload["model"]
        self.is_streamed = bool(payload.get("stream"))

    def elapsed_ms(self) -> float:
        """Time since the request arrived; once the response is out, the request's latency
        (settlement, logging and metrics afterwards are not the client's wait)."""
        end = self.finished if self.finished is not None else time.perf_counter()
        return (end - self.started) * 1000

    def mark_finished(self) -> None:
        if self.finished is None:
            self.finished = time.perf_counter()

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()

    def final_usage(self) -> Usage:
        """The upstream's usage, or a local count when it sent none (e.g. a cut stream).

        A request that produced nothing (refused or failed upstream) used nothing."""
        if self.usage is None and not self.streamed_events:
            self.usage = Usage()
        elif self.usage is None:
            self.usage = Usage(
                prompt_tokens=tokens.count_tokens(_prompt_text(self.payload or {})),
                completion_tokens=tokens.count_tokens(_streamed_text(self.streamed_events)),
            )
        return self.usage


def _prompt_text(payload: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    for name in ("prompt", "input"):
        value = payload.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(item for item in value if isinstance(item, str))
    return "\n".join(parts)


def _streamed_text(events: list[bytes]) -> str:
    parts: list[str] = []
    for event in events:
        for line in event.splitlines():
            if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
                continue
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                text = text if isinstance(text, str) else choice.get("text")
                if isinstance(text, str):
                    parts.append(text)
    return "".join(parts)
