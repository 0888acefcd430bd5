"""The architecture probes, measured side by side in one run (python bench/run.py --probes):

1. upstream client: aiohttp vs httpx, in the same minimal ASGI forwarder under uvicorn;
2. ASGI server: uvicorn (uvloop + httptools) vs daphne, serving that same forwarder;
3. framework: a Django async view (project settings and middleware) vs the raw ASGI handler;
4. serialisation: orjson vs json on a typical chat request and answer.

Each server variant is a subprocess on 127.0.0.1 in front of the same fake upstream; rounds
alternate the variants; the table shows medians and each variant's ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench import report, stack
from bench.probes import serialization
from bench.stack import RESULTS_DIR, Served

COMPARISONS = ("client", "server", "framework")


def _env(upstream: Served, client: str) -> dict[str, str]:
    env = stack.gateway_env(
        database_url="sqlite:///unused.sqlite3", redis_url="", upstream_url=upstream.base_url
    )
    env.update(PROBE_UPSTREAM_URL=upstream.base_url, PROBE_CLIENT=client)
    return env


def _start_variants(upstream: Served) -> dict[str, Served]:
    app = "bench.probes.forward_app:application"
    variants = {
        "aiohttp": stack.start_uvicorn("probe-aiohttp", app, _env(upstream, "aiohttp")),
        "httpx": stack.start_uvicorn("probe-httpx", app, _env(upstream, "httpx")),
    }
    port = stack.free_port()
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    variants["daphne"] = stack._start_server(
        "probe-daphne", daphne, _env(upstream, "aiohttp"), port, "/health", 60.0
    )
    variants["django"] = stack.start_uvicorn(
        "probe-django",
        "bench.probes.django_forward:application_factory",
        _env(upstream, "aiohttp"),
        extra=("--factory",),
    )
    bare_env = {**_env(upstream, "aiohttp"), "PROBE_DJANGO_MIDDLEWARE": "0"}
    variants["django-bare"] = stack.start_uvicorn(
        "probe-django-bare",
        "bench.probes.django_forward:application_factory",
        bare_env,
        extra=("--factory",),
    )
    for name, served in variants.items():
        served.name = name
    return variants


PLANS = {
    "client": ("aiohttp", "httpx"),
    "server": ("aiohttp", "daphne"),  # the aiohttp forwarder under uvicorn vs under daphne
    # raw ASGI vs a Django view (project middleware, then none), all uvicorn + aiohttp
    "framework": ("aiohttp", "django", "django-bare"),
}
LABELS = {
    "aiohttp": "uvicorn+ASGI+aiohttp",
    "httpx": "uvicorn+ASGI+httpx",
    "daphne": "daphne+ASGI+aiohttp",
    "django": "uvicorn+Django view+aiohttp",
    "django-bare": "…Django view, no middleware",
}


def run_probes(args: argparse.Namespace) -> int:
    from bench.run import rounds, spec_for

    started = time.monotonic()
    upstream = stack.start_upstream()
    variants: dict[str, Served] = {}
    runs: list[dict[str, Any]] = []
    try:
        variants = _start_variants(upstream)
        for comparison, names in PLANS.items():
            for concurrency in args.clients:
                plan = [
                    (
                        variants[n],
                        spec_for(variants[n], is_stream=False, concurrency=concurrency, args=args),
                    )
                    for n in names
                ]
                runs += rounds(f"{comparison} c={concurrency}", plan, upstream, args)
    finally:
        for served in variants.values():
            served.stop()
        upstream.stop()
    codec = serialization.compare()
    lines = [
        "",
        f"{'probe':<16}{'variant':<30}{'rps':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu ms/r':>10}{'rps ratio':>11}",
    ]
    summary = report.summarise(runs)
    for (scenario, target), row in summary.items():
        base = summary[(scenario, PLANS[scenario.split()[0]][0])]
        lines.append(
            f"{scenario:<16}{LABELS[target]:<30}{row['rps']:>8.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{row['cpu_ms_per_req']:>10.3f}"
            f"{report.ratio(row['rps'], base['rps']):>10.2f}×"
        )
    lines.append("")
    lines.append(
        f"{'payload':<14}{'bytes':>7}{'json enc µs':>13}{'orjson enc µs':>15}"
        f"{'json dec µs':>13}{'orjson dec µs':>15}"
    )
    for row in codec:
        lines.append(
            f"{row['payload']:<14}{row['bytes']:>7}{row['json_encode_us']:>13.2f}"
            f"{row['orjson_encode_us']:>15.2f}{row['json_decode_us']:>13.2f}"
            f"{row['orjson_decode_us']:>15.2f}"
        )
    lines.append(f"total seconds: {time.monotonic() - started:.0f}")
    print("\n".join(lines))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"probes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {"args": vars(args), "runs": runs, "serialization": codec}, indent=1, default=str
        )
    )
    print(f"results: {path}")
    return 0
