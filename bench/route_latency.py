"""Routing decision latency for a ~4,000-token conversation: detectors + policy, p50/p99.

    python -m bench.route_latency [--iterations 2000]

Measures gateway.routing.Router.route() end to end as the hot path calls it (text extraction,
the three detectors, the decision, headers, the fields the request log line will carry),
on the shipped policy/default.yaml, for model "auto". The target is p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicc_site.settings")
os.environ.setdefault("DEBUG", "true")
django.setup()

from bench.evaluate_detectors import latency_conversation  # noqa: E402
from gateway.context import RequestContext  # noqa: E402
from gateway.routing import Router  # noqa: E402


async def measure(iterations: int) -> tuple[list[float], list[float], list[float]]:
    router = Router()
    messages = latency_conversation()
    outer: list[float] = []
    inner: list[float] = []
    cpu: list[float] = []
    for index in range(iterations + 50):
        payload = {"model": "auto", "messages": messages}
        ctx = RequestContext(correlation_id="bench", runtime=None)  # type: ignore[arg-type]
        ctx.endpoint = "/v1/chat/completions"
        started, cpu_started = time.perf_counter(), time.thread_time()
        await router.route(ctx, payload, {})
        elapsed, cpu_elapsed = time.perf_counter() - started, time.thread_time() - cpu_started
        if index >= 50:  # warm-up: regex compilation, caches
            inner.append(ctx.route_fields["route_latency_ms"])
            outer.append(elapsed * 1000)
            cpu.append(cpu_elapsed * 1000)
    return outer, inner, cpu


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    messages = latency_conversation()
    chars = sum(len(m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
                for m in messages)  # fmt: skip
    outer, inner, cpu = asyncio.run(measure(args.iterations))
    print(f"conversation: {len(messages)} messages, {chars} chars (~{chars // 4} tokens)")
    # CPU time leaves out the time the OS ran other processes: on a busy machine the wall-clock
    # p99 measures the neighbours as much as the router.
    for name, samples in (
        ("decision (route_latency_ms)", inner),
        ("route(), wall", outer),
        ("route(), CPU time", cpu),
    ):
        print(f"{name:30} p50 {_pct(samples, 0.5):.3f} ms  p99 {_pct(samples, 0.99):.3f} ms  "
              f"max {max(samples):.3f} ms  n={len(samples)}")  # fmt: skip


if __name__ == "__main__":
    main()
