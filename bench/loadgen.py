"""Closed-loop HTTP load generator: N concurrent clients, each sending its next request the moment
the previous one finished, for a fixed duration.

Per request it records the latency (request sent -> last byte read), for streams the time to the
first body byte, and whether the answer was good (200 and, for streams, a `data: [DONE]`
terminator; for plain answers a JSON body with `choices`). Only requests that *finish* inside the
measured window (after the warm-up, before the deadline) are measured, so throughput is
completions per second even for a target whose requests take longer than the warm-up; errors
count over the whole run: "0 errors" means 0 including the warm-up.

One aiohttp session per run with keep-alive connections, so the figures are those of a pooled
client such as the OpenAI SDK, not of connection set-up.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_DONE = b"data: [DONE]"
_ERROR_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    body: bytes
    is_stream: bool
    concurrency: int
    duration_s: float
    warmup_s: float = 0.5
    # Each request takes the next header set, so traffic can spread over many keys.
    header_sets: Sequence[dict[str, str]] = ({},)
    # Replace UNIQUE_MARKER in the body with a per-request number, so no two prompts are equal
    # (a response cache must not turn the "full path" scenarios into cache hits).
    is_unique: bool = True


UNIQUE_MARKER = b"#N#"


@dataclass(slots=True)
class LoadResult:
    requests: int = 0  # good and finished inside the measured window
    sent: int = 0  # every request sent, warm-up included (what CPU deltas are divided by)
    errors: int = 0  # whole run, warm-up included
    error_samples: list[str] = field(default_factory=list)
    measured_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.measured_s if self.measured_s else 0.0

    def latency(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct)

    def ttfb(self, pct: float) -> float:
        return percentile(self.ttfb_ms, pct)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < _ERROR_SAMPLES:
            self.error_samples.append(message[:300])


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no samples (so a missing figure never reads as 0)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def _one(
    session: aiohttp.ClientSession,
    spec: LoadSpec,
    headers: dict[str, str],
    result: LoadResult,
    window: tuple[float, float],
) -> None:
    result.sent += 1
    body = (
        spec.body.replace(UNIQUE_MARKER, str(result.sent).encode()) if spec.is_unique else spec.body
    )
    started = time.perf_counter()
    first_byte: float | None = None
    try:
        async with session.post(spec.url, data=body, headers=headers) as response:
            if spec.is_stream:
                tail = b""
                async for chunk in response.content.iter_any():
                    if first_byte is None:
                        first_byte = time.perf_counter()
                    tail = (tail + chunk)[-64:]
                is_good = response.status == 200 and _DONE in tail
                detail = tail
            else:
                answer = await response.read()
                is_good = response.status == 200 and answer[:1] == b"{" and b'"choices"' in answer
                detail = answer[:200]
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error(f"{type(exc).__name__}: {exc}")
        return
    finished = time.perf_counter()
    if not is_good:
        result.error(f"HTTP {response.status}: {detail!r}")
        return
    if not window[0] <= finished <= window[1]:
        return
    result.requests += 1
    result.latencies_ms.append((finished - started) * 1000)
    if first_byte is not None:
        result.ttfb_ms.append((first_byte - started) * 1000)


async def run_load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    base_headers = {"Content-Type": "application/json"}
    header_sets = [{**base_headers, **h} for h in spec.header_sets]
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        loop_started = time.perf_counter()
        measure_from = loop_started + spec.warmup_s
        deadline = measure_from + spec.duration_s

        async def client(index: int) -> None:
            # Spread the clients' starting points so every header set is used early.
            offset = index * len(header_sets) // spec.concurrency
            headers_cycle = itertools.islice(itertools.cycle(header_sets), offset, None)
            for headers in headers_cycle:
                if time.perf_counter() >= deadline:
                    return
                await _one(session, spec, headers, result, (measure_from, deadline))

        await asyncio.gather(*(client(i) for i in range(spec.concurrency)))
        result.measured_s = spec.duration_s
    return result


async def send_each_once(spec: LoadSpec) -> LoadResult:
    """One request per header set (e.g. to load every key into a gateway's credential cache)."""
    result = LoadResult()
    gate = asyncio.Semaphore(spec.concurrency)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=spec.concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:

        async def send(headers: dict[str, str]) -> None:
            async with gate:
                await _one(
                    session,
                    spec,
                    {"Content-Type": "application/json", **headers},
                    result,
                    window=(0.0, math.inf),
                )

        await asyncio.gather(*(send(h) for h in spec.header_sets))
    return result


def run_sync(coroutine: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def run_load_sync(spec: LoadSpec) -> LoadResult:
    """Run one load in a fresh uvloop event loop (the orchestrator itself is synchronous)."""
    return run_sync(run_load(spec))
