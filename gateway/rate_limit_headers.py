"""A rate-limit decision as response headers: OpenAI's `x-ratelimit-*` and the IETF
`RateLimit` / `RateLimit-Policy` fields."""

from __future__ import annotations

from gateway.limits import WINDOW_MS, RateLimitResult


def _duration(ms: int) -> str:
    """OpenAI's reset format: "20ms", "1s", "6m0s", "1m30.5s"."""
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    seconds = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def rate_limit_headers(result: RateLimitResult) -> list[tuple[str, str]]:
    """Response headers for a rate-limit decision (admitted or rejected).

    OpenAI: x-ratelimit-{limit,remaining,reset}-{requests,tokens}. IETF
    draft-ietf-httpapi-ratelimit-headers-11: `RateLimit-Policy: "requests";q=60;w=60` and
    `RateLimit: "requests";r=59;t=1` (Structured Field lists; `t` is whole seconds). Tokens
    are not in the IETF fields: "tokens" is not a registered quota unit, and an unknown unit
    would be read as requests. Concurrency uses the registered "concurrent-requests" unit.
    Retry-After is added on rejection.
    """
    headers: list[tuple[str, str]] = []
    for suffix, quota in (("requests", result.requests), ("tokens", result.tokens)):
        if quota is None:
            continue
        headers += [
            (f"x-ratelimit-limit-{suffix}", str(quota.limit)),
            (f"x-ratelimit-remaining-{suffix}", str(quota.remaining)),
            (f"x-ratelimit-reset-{suffix}", _duration(quota.reset_ms)),
        ]
    policies: list[str] = []
    states: list[str] = []
    if result.requests is not None:
        policies.append(f'"requests";q={result.requests.limit};w={WINDOW_MS // 1000}')
        states.append(f'"requests";r={result.requests.remaining};t={result.requests.reset_s}')
    if result.concurrency is not None:
        policies.append(f'"concurrency";q={result.concurrency.limit};qu="concurrent-requests"')
        states.append(f'"concurrency";r={result.concurrency.remaining}')
    if policies:
        headers += [("RateLimit-Policy", ", ".join(policies)), ("RateLimit", ", ".join(states))]
    if not result.admitted:
        headers.append(("Retry-After", str(result.retry_after_s)))
    return headers
