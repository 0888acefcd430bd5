"""Everything one request learns on its way through the gateway, for the response and the log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.auth import Caller
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
    started: float = field(default_factory=time.perf_counter)
    caller: Caller | None = None
    requested_model: str | None = None
    is_streamed: bool = False
    status: int = 0
    usage: Usage | None = None
    upstream_latency_ms: float | None = None
    ttfb_ms: float | None = None
    upstream_cost: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)

    def use_payload(self, payload: dict[str, Any]) -> None:
        self.requested_model = payload["model"]
        self.is_streamed = bool(payload.get("stream"))

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()
