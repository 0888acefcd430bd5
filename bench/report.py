"""Turning runs into the report: medians over rounds, paired differences against direct, ratios
against LiteLLM, and the issue's targets checked one by one.

A run record is a dict (see `bench.run.measure`): scenario, target, round, rps, p50_ms, p99_ms,
ttfb_p50_ms, cpu_ms_per_req, peak_rss_mb, errors, ... Differences against direct are paired by
round (the two ran back to back) before the median is taken.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Run = dict[str, Any]

TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 3.0
TARGET_ADDED_TTFB_MS = 1.5
TARGET_THROUGHPUT_VS_LITELLM = 20.0
TARGET_RSS_MB = 150.0
TARGET_KEY_TABLE_COST_GROWTH = 0.10
KEY_TABLE_SCENARIO = "key table c=16"
# The same server and upstream client as the gateway with no feature at all: what this stack
# can do on this machine, measured in the same rounds (bench/probes/forward_app.py).
CEILING = "forwarder"


def _median(values: Iterable[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def group(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    grouped: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run["scenario"], run["target"])].append(run)
    return grouped


def summarise(runs: list[Run]) -> dict[tuple[str, str], dict[str, float]]:
    """Median of every figure over the rounds of one (scenario, target); errors are summed."""
    out = {}
    for key, rows in group(runs).items():
        out[key] = {
            "rounds": len(rows),
            "rps": _median(r["rps"] for r in rows),
            "p50_ms": _median(r["p50_ms"] for r in rows),
            "p99_ms": _median(r["p99_ms"] for r in rows),
            "ttfb_p50_ms": _median(r["ttfb_p50_ms"] for r in rows),
            "ttfb_p99_ms": _median(r["ttfb_p99_ms"] for r in rows),
            "cpu_ms_per_req": _median(r["cpu_ms_per_req"] for r in rows),
            "upstream_cpu_ms_per_req": _median(r["upstream_cpu_ms_per_req"] for r in rows),
            "peak_rss_mb": max(
                (max(r["peak_rss_mb"], default=math.nan) for r in rows), default=math.nan
            ),
            "workers": max(len(r["peak_rss_mb"]) for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "requests": sum(r["requests"] for r in rows),
            "cache_hit_ratio": _median(r.get("cache_hit_ratio", math.nan) for r in rows),
        }
    return out


def paired(runs: list[Run], scenario: str, target: str, base: str, field: str) -> float:
    """Median over rounds of (target − base) for `field`, pairing runs of the same round."""
    by_round: dict[int, dict[str, float]] = defaultdict(dict)
    for run in runs:
        if run["scenario"] == scenario and run["target"] in (target, base):
            by_round[run["round"]][run["target"]] = run[field]
    return _median(r[target] - r[base] for r in by_round.values() if target in r and base in r)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(runs: list[Run]) -> str:
    summary = summarise(runs)
    header = (
        f"{'scenario':<22}{'target':<16}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'+p50':>8}"
        f"{'+p99':>8}{'ttfb50':>8}{'+ttfb':>8}{'cpu ms/r':>9}{'RSS MB':>8}{'err':>5}"
    )
    lines = [header, "-" * len(header)]
    for (scenario, target), row in summary.items():
        added = {
            f: paired(runs, scenario, target, "direct", f) if target != "direct" else math.nan
            for f in ("p50_ms", "p99_ms", "ttfb_p50_ms")
        }
        lines.append(
            f"{scenario:<22}{target:<16}{_fmt(row['rps'], 0):>9}{_fmt(row['p50_ms']):>9}"
            f"{_fmt(row['p99_ms']):>9}{_fmt(added['p50_ms']):>8}{_fmt(added['p99_ms']):>8}"
            f"{_fmt(row['ttfb_p50_ms']):>8}{_fmt(added['ttfb_p50_ms']):>8}"
            f"{_fmt(row['cpu_ms_per_req'], 3):>9}{_fmt(row['peak_rss_mb'], 0):>8}"
            f"{row['errors']:>5}"
        )
    return "\n".join(lines)


def _has(summary: dict[tuple[str, str], dict[str, float]], scenario: str, target: str) -> bool:
    return (scenario, target) in summary


def comparisons(runs: list[Run]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure, the target and whether it was met."""
    summary = summarise(runs)
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, target: float, *, at_most: bool) -> None:
        is_met = (value <= target) if at_most else (value >= target)
        checks.append(
            {
                "name": name,
                "value": value,
                "target": target,
                "at_most": at_most,
                "is_met": bool(is_met) and not math.isnan(value),
            }
        )

    if _has(summary, "chat c=1", "aicc"):
        check(
            "added latency p50, 1 client (ms)",
            paired(runs, "chat c=1", "aicc", "direct", "p50_ms"),
            TARGET_ADDED_P50_MS,
            at_most=True,
        )
        check(
            "added latency p99, 1 client (ms)",
            paired(runs, "chat c=1", "aicc", "direct", "p99_ms"),
            TARGET_ADDED_P99_MS,
            at_most=True,
        )
    if _has(summary, "stream c=1", "aicc"):
        check(
            "added TTFB p50, stream, 1 client (ms)",
            paired(runs, "stream c=1", "aicc", "direct", "ttfb_p50_ms"),
            TARGET_ADDED_TTFB_MS,
            at_most=True,
        )
    for kind in ("chat", "stream"):
        scenario = f"{kind} c=64"
        if _has(summary, scenario, "aicc") and _has(summary, scenario, "litellm"):
            check(
                f"throughput AICC/LiteLLM, {kind}, 64 clients (×)",
                ratio(summary[(scenario, "aicc")]["rps"], summary[(scenario, "litellm")]["rps"]),
                TARGET_THROUGHPUT_VS_LITELLM,
                at_most=False,
            )
    peaks = [
        row["peak_rss_mb"] for (_, target), row in summary.items() if target.startswith("aicc")
    ]
    if peaks:
        check(
            "peak RSS per worker, every AICC worker over every scenario (MB)",
            max(peaks),
            TARGET_RSS_MB,
            at_most=True,
        )
    small, big = (KEY_TABLE_SCENARIO, "aicc-10keys"), (KEY_TABLE_SCENARIO, "aicc-1M")
    spread = (KEY_TABLE_SCENARIO, "aicc-1M-spread")
    if small in summary and big in summary:
        growth = ratio(summary[big]["cpu_ms_per_req"], summary[small]["cpu_ms_per_req"]) - 1
        check(
            "CPU/request growth, 10 -> 1,000,000 keys (1 tenant -> 10,000 tenants in the table)",
            growth,
            TARGET_KEY_TABLE_COST_GROWTH,
            at_most=True,
        )
    if big in summary and spread in summary:
        growth = ratio(summary[spread]["cpu_ms_per_req"], summary[big]["cpu_ms_per_req"]) - 1
        check(
            "CPU/request growth, traffic from 1 tenant -> from 1,000 of the 10,000 tenants",
            growth,
            TARGET_KEY_TABLE_COST_GROWTH,
            at_most=True,
        )
    total_errors = sum(r["errors"] for r in runs)
    check("errors over every run", float(total_errors), 0.0, at_most=True)
    return checks


def litellm_ratios(runs: list[Run]) -> list[tuple[str, float, float, float]]:
    """(what, AICC figure, LiteLLM figure, LiteLLM/AICC or AICC/LiteLLM as labelled)."""
    summary = summarise(runs)
    out = []
    for kind in ("chat", "stream"):
        scenario = f"{kind} c=64"
        if _has(summary, scenario, "litellm") and _has(summary, scenario, "aicc"):
            a, b = summary[(scenario, "aicc")]["rps"], summary[(scenario, "litellm")]["rps"]
            out.append((f"{kind} rps at 64 clients (AICC/LiteLLM)", a, b, ratio(a, b)))
    for scenario, field, label in (
        ("chat c=1", "p50_ms", "added p50 latency at 1 client, ms (LiteLLM/AICC)"),
        ("chat c=1", "p99_ms", "added p99 latency at 1 client, ms (LiteLLM/AICC)"),
        ("stream c=1", "ttfb_p50_ms", "added stream TTFB p50 at 1 client, ms (LiteLLM/AICC)"),
    ):
        if _has(summary, scenario, "litellm") and _has(summary, scenario, "aicc"):
            a = paired(runs, scenario, "aicc", "direct", field)
            b = paired(runs, scenario, "litellm", "direct", field)
            out.append((label, a, b, ratio(b, a)))
    for kind in ("chat", "stream"):
        scenario = f"{kind} c=64"
        if _has(summary, scenario, "litellm") and _has(summary, scenario, "aicc"):
            a = summary[(scenario, "aicc")]["cpu_ms_per_req"]
            b = summary[(scenario, "litellm")]["cpu_ms_per_req"]
            out.append((f"{kind} CPU ms/request at 64 clients (LiteLLM/AICC)", a, b, ratio(b, a)))
    return out


def ceiling_ratios(runs: list[Run]) -> list[tuple[str, float]]:
    """How AICC and LiteLLM compare with the bare forwarder (chat), measured in the same rounds."""
    summary = summarise(runs)
    ceiling = summary.get(("chat c=64", CEILING))
    aicc = summary.get(("chat c=64", "aicc"))
    litellm = summary.get(("chat c=64", "litellm"))
    out: list[tuple[str, float]] = []
    if ceiling and litellm:
        label = "bare forwarder rps / LiteLLM rps, 64 clients"
        out.append((label, ratio(ceiling["rps"], litellm["rps"])))
    if ceiling and aicc:
        label = "AICC rps / bare forwarder rps, 64 clients"
        out.append((label, ratio(aicc["rps"], ceiling["rps"])))
        label = "AICC CPU ms/request / bare forwarder's, 64 clients"
        out.append((label, ratio(aicc["cpu_ms_per_req"], ceiling["cpu_ms_per_req"])))
    if ("chat c=1", CEILING) in summary:
        added = paired(runs, "chat c=1", CEILING, "direct", "p50_ms")
        out.append(("bare forwarder added p50, 1 client (ms)", added))
    return out


def render(runs: list[Run], context: dict[str, Any]) -> str:
    parts = ["", table(runs), ""]
    ratios = litellm_ratios(runs)
    if ratios:
        parts.append(f"{'AICC vs LiteLLM':<58}{'AICC':>9}{'LiteLLM':>9}{'ratio':>8}")
        parts += [
            f"{label:<58}{_fmt(a):>9}{_fmt(b):>9}{_fmt(r, 1):>7}×" for label, a, b, r in ratios
        ]
        parts.append("")
    ceiling = ceiling_ratios(runs)
    if ceiling:
        parts.append("Ceiling (uvicorn + aiohttp forwarding, no features; same rounds):")
        parts += [f"  {label:<56}{_fmt(value, 3):>9}" for label, value in ceiling]
        parts.append("")
    parts.append("Targets (issue):")
    for c in comparisons(runs):
        sign = "≤" if c["at_most"] else "≥"
        mark = "met " if c["is_met"] else "MISS"
        parts.append(f"  [{mark}] {c['name']}: {_fmt(c['value'], 3)} (target {sign} {c['target']})")
    for key, value in context.items():
        parts.append(f"{key}: {value}")
    return "\n".join(parts)
