"""AICC benchmark: the gateway against direct-to-upstream (and LiteLLM), side by side in one run.

    python bench/run.py               # full run, ~6 minutes (make bench)
    python bench/run.py --quick       # ~1 minute, no LiteLLM, smaller key table on first build
    python bench/run.py --no-litellm  # skip the LiteLLM comparison
    python bench/run.py --probes      # the architecture probes instead (bench/probes/)
    python bench/run.py --profile     # also: py-spy on the gateway under 64-client load

Everything runs on 127.0.0.1: the fake upstream (tests/fake_upstream.py), AICC under uvicorn with
production settings (1 worker, 2 workers, and 1 worker on the 1,000,000-key database), LiteLLM
when installed. Each scenario runs `--rounds` rounds; in every round each target runs once, in a
rotating order, so drift in machine load hits all targets alike. The table shows medians over
rounds; differences against direct are paired by round. JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson

from bench import report, stack
from bench.environment import dataset, flush_bench_redis, manage, resolve_storage
from bench.loadgen import LoadSpec, run_load_sync, run_sync, send_each_once
from bench.stack import RESULTS_DIR, Served

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/aicc_bench"
DEFAULT_BIG_DATABASE = "postgres://postgres@127.0.0.1:5432/aicc_bench_big"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
MODEL = "gpt-4o-mini"
KEY_TABLE_SCENARIO = report.KEY_TABLE_SCENARIO
CHAT_TARGETS = ("direct", report.CEILING, "aicc", "litellm")
STREAM_TARGETS = ("direct", "aicc", "litellm")
# A typical small chat: a system prompt, a user turn, a 16-token answer (16 SSE chunks + 3).
CHAT = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a concise assistant for an internal helpdesk."},
        {"role": "user", "content": "Request #N#: how do I reset my VPN token? Answer briefly."},
    ],
    "max_tokens": 16,
    "temperature": 0.2,
}


def chat_body(*, is_stream: bool, is_deterministic: bool = False) -> bytes:
    body: dict[str, object] = {**CHAT, "stream": True} if is_stream else dict(CHAT)
    if is_deterministic:
        body["temperature"] = 0  # what the response cache serves by default
    return orjson.dumps(body)


# --- measuring ----------------------------------------------------------------------------------


def upstream_llm_calls(upstream: Served) -> int:
    return int(httpx.get(f"{upstream.base_url}/_control/stats").json()["llm_calls"])


def measure(
    target: Served, upstream: Served, spec: LoadSpec, *, scenario: str, round_no: int
) -> dict[str, Any]:
    cpu_before, upstream_cpu_before = target.cpu_seconds(), upstream.cpu_seconds()
    calls_before = upstream_llm_calls(upstream)
    result = run_load_sync(spec)
    cpu_s = target.cpu_seconds() - cpu_before
    upstream_cpu_s = upstream.cpu_seconds() - upstream_cpu_before
    calls = upstream_llm_calls(upstream) - calls_before
    sent = max(result.sent, 1)
    return {
        "scenario": scenario,
        "target": target.name,
        "round": round_no,
        "concurrency": spec.concurrency,
        "is_stream": spec.is_stream,
        "rps": result.rps,
        "requests": result.requests,
        "sent": result.sent,
        "p50_ms": result.latency(50),
        "p99_ms": result.latency(99),
        "ttfb_p50_ms": result.ttfb(50),
        "ttfb_p99_ms": result.ttfb(99),
        "cpu_ms_per_req": cpu_s * 1000 / sent,
        "upstream_cpu_ms_per_req": upstream_cpu_s * 1000 / sent,
        "peak_rss_mb": target.peak_rss_mb(),
        "errors": result.errors,
        "error_samples": result.error_samples,
        "cache_hit_ratio": 1 - calls / sent if target.name != "direct" else math.nan,
    }


def spec_for(
    target: Served,
    *,
    is_stream: bool,
    concurrency: int,
    args: argparse.Namespace,
    keys: list[str] | None = None,
    is_unique: bool = True,
) -> LoadSpec:
    header_sets = [target.headers(k) for k in keys] if keys else [target.headers()]
    duration_s, warmup_s = args.duration, args.warmup
    if target.name == "litellm":
        # Its requests take up to ~2 s at 64 clients: a short window would hold one batch.
        duration_s, warmup_s = max(duration_s, args.slow_duration), max(warmup_s, 1.0)
    return LoadSpec(
        url=target.chat_url,
        # Repeated prompts are the cache-hit scenario: make them cacheable.
        body=chat_body(is_stream=is_stream, is_deterministic=not is_unique),
        is_stream=is_stream,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        header_sets=header_sets,
        is_unique=is_unique,
    )


def rounds(
    scenario: str, plan: list[tuple[Served, LoadSpec]], upstream: Served, args: argparse.Namespace
) -> list[dict[str, Any]]:
    runs = []
    for round_no in range(args.rounds):
        shift = round_no % len(plan)
        for target, spec in plan[shift:] + plan[:shift]:
            run = measure(target, upstream, spec, scenario=scenario, round_no=round_no)
            runs.append(run)
            print(
                f"  {scenario:<20} r{round_no} {target.name:<9} {run['rps']:>8.0f} rps  "
                f"p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms  "
                f"cpu {run['cpu_ms_per_req']:.3f} ms/req  errors {run['errors']}",
                flush=True,
            )
            for sample in run["error_samples"]:
                print(f"    error: {sample}", flush=True)
    return runs


def main_scenarios(
    targets: dict[str, Served], data: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    upstream = targets["direct"]
    runs: list[dict[str, Any]] = []
    for is_stream in (False, True):
        for concurrency in args.clients:
            scenario = f"{'stream' if is_stream else 'chat'} c={concurrency}"
            # The bare forwarder buffers whole answers, so it is a ceiling for chat only.
            names = list(STREAM_TARGETS if is_stream else CHAT_TARGETS)
            if concurrency == max(args.clients):
                names.append("aicc-2w")
            plan = [
                (
                    targets[name],
                    spec_for(
                        targets[name], is_stream=is_stream, concurrency=concurrency, args=args
                    ),
                )
                for name in names
                if name in targets
            ]
            runs += rounds(scenario, plan, upstream, args)
    cache_plan = [
        (
            targets[name],
            spec_for(targets[name], is_stream=False, concurrency=16, args=args, is_unique=False),
        )
        for name in ("direct", "aicc")
    ]
    runs += rounds("cache-hit c=16", cache_plan, upstream, args)
    aicc, big = targets["aicc"], targets["aicc-big"]
    # Load every spread key into the big gateway's credential cache before measuring.
    run_sync(
        send_each_once(
            spec_for(
                big, is_stream=False, concurrency=16, args=args, keys=data["big"]["spread_keys"]
            )
        )
    )
    # One scenario, all variants alternating in every round: the comparison is within a round.
    spread = dataclasses.replace(big, name="aicc-1M-spread")
    plan = [(upstream, spec_for(upstream, is_stream=False, concurrency=16, args=args))]
    for target, keys in (
        (dataclasses.replace(aicc, name="aicc-10keys"), data["small"]["keys"]),
        (dataclasses.replace(big, name="aicc-1M"), data["big"]["one_tenant_keys"]),
        (spread, data["big"]["spread_keys"]),
    ):
        plan.append(
            (target, spec_for(target, is_stream=False, concurrency=16, args=args, keys=keys))
        )
    runs += rounds(KEY_TABLE_SCENARIO, plan, upstream, args)
    return runs


def profile(target: Served, args: argparse.Namespace) -> dict[str, Any]:
    from bench.profiling import profile_under_load

    return profile_under_load(
        target, chat_body(is_stream=False), chat_body(is_stream=True), seconds=args.profile_seconds
    )


# --- the run ------------------------------------------------------------------------------------


def start_targets(
    storage: dict[str, str], data: dict[str, Any], args: argparse.Namespace
) -> dict[str, Served]:
    targets: dict[str, Served] = {}
    try:
        return _start_targets(targets, storage, data, args)
    except BaseException:
        # Nothing may outlive a failed start (a gateway that cannot import, LiteLLM timing out).
        for served in reversed(targets.values()):
            served.stop()
        raise


def _start_targets(
    targets: dict[str, Served],
    storage: dict[str, str],
    data: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Served]:
    upstream = targets["direct"] = stack.start_upstream()
    common = {"redis_url": storage["redis_url"], "upstream_url": upstream.base_url}
    small_key, big_key = data["small"]["keys"][0], data["big"]["one_tenant_keys"][0]
    targets[report.CEILING] = stack.start_forwarder(upstream.base_url)
    targets["aicc"] = stack.start_gateway(
        "aicc", workers=1, api_key=small_key, database_url=storage["database_url"], **common
    )
    targets["aicc-2w"] = stack.start_gateway(
        "aicc-2w", workers=2, api_key=small_key, database_url=storage["database_url"], **common
    )
    targets["aicc-big"] = stack.start_gateway(
        "aicc-big", workers=1, api_key=big_key, database_url=storage["big_database_url"], **common
    )
    if args.litellm:
        is_available, detail = stack.litellm_available()
        if is_available:
            targets["litellm"] = stack.start_litellm_proxy(upstream.base_url)
        else:
            print(f"LiteLLM skipped: {detail}", flush=True)
    for served in targets.values():
        answer = httpx.post(
            served.chat_url,
            content=chat_body(is_stream=False).replace(b"#N#", b"0"),
            headers={"Content-Type": "application/json", **served.headers()},
            timeout=30,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"{served.name} answered {answer.status_code}: {answer.text[:500]}")
    return targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about one minute, no LiteLLM")
    parser.add_argument("--no-litellm", dest="litellm", action="store_false")
    parser.add_argument("--probes", action="store_true", help="run the architecture probes")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway under load")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.5, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument(
        "--slow-duration", type=float, default=4.0, help="measured seconds per LiteLLM run"
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--keys", type=int, default=1_000_000, help="big key table size")
    parser.add_argument("--tenants", type=int, default=10_000, help="big tenant table size")
    parser.add_argument("--spread", type=int, default=1000, help="tenants the spread load uses")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--big-database-url", default=DEFAULT_BIG_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.litellm = 2, 0.8, 0.3, False
        args.spread, args.profile_seconds = 200, 8.0
    return args


def _is_libpython_shared() -> bool:
    try:
        return "libpython" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        # AICC and LiteLLM both run on this build (tests.litellm_proxy.base_python), and the
        # build matters: pyenv's (shared libpython, no PGO) ran the gateway ~12 % slower than
        # Debian's static, PGO-built python3.11 here (docs/BENCHMARKS.md).
        "interpreter_prefix": sys.base_prefix,
        "libpython_shared": _is_libpython_shared(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.probes:
        from bench.probes.run_probes import run_probes

        return run_probes(args)
    before = machine()
    print(f"machine: {before}", flush=True)
    storage = resolve_storage(args)
    print(f"storage: {storage}", flush=True)
    for url in (storage["database_url"], storage["big_database_url"]):
        manage(url, storage["redis_url"], "migrate", "--noinput")
    flush_bench_redis(storage["redis_url"])
    data = {"small": dataset(storage["database_url"], storage["redis_url"], "small")}
    data["big"] = dataset(
        storage["big_database_url"],
        storage["redis_url"],
        "big",
        "--keys",
        str(args.keys),
        "--tenants",
        str(args.tenants),
        "--spread",
        str(args.spread),
    )
    # Alternating small / big twice, so a change in machine load hits both tables alike.
    lookups: dict[str, list[dict[str, Any]]] = {"small": [], "big": []}
    for _ in range(2):
        for name, url in (("small", storage["database_url"]), ("big", storage["big_database_url"])):
            lookups[name].append(dataset(url, storage["redis_url"], "lookups", "--count", "500"))
    print(f"key tables: {lookups}; big insert: {data['big']['insert']}", flush=True)
    print(f"configured: {data['small']['features']}", flush=True)
    targets = start_targets(storage, data, args)
    print(f"setup took {time.monotonic() - started:.0f} s", flush=True)
    try:
        runs = main_scenarios(targets, data, args)
        profiled = profile(targets["aicc"], args) if args.profile else None
    finally:
        for served in reversed(targets.values()):
            served.stop()
    after = machine()
    context = {
        "load average before / after": f"{before['load_avg']} / {after['load_avg']}",
        "key tables (credential_record lookup)": lookups,
        "big table insert": data["big"]["insert"],
        "gateway features configured": data["small"]["features"],
        "litellm": targets["litellm"].notes if "litellm" in targets else "not run",
        "total seconds": round(time.monotonic() - started),
    }
    print(report.render(runs, context))
    if profiled:
        print(profiled["summary"])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {
        "args": vars(args),
        "machine": {"before": before, "after": after},
        "context": context,
        "runs": runs,
        "checks": report.comparisons(runs),
        "profile": profiled,
        "ratios_vs_litellm": report.litellm_ratios(runs),
        "ceiling": report.ceiling_ratios(runs),
    }
    path = RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    (RESULTS_DIR / "latest.json").write_text(path.read_text())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
