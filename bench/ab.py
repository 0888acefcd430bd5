"""Two gateway configurations against each other, in alternating short bursts.

    python -m bench.ab AICC_GC_GEN0_THRESHOLD=0 --versus ""   # Python's collector vs ours
    python -m bench.ab A=1 --versus A=2 --clients 64 --stream --rounds 12
    python -m bench.ab "" --base a24c4c4                      # commit a24c4c4 vs this checkout
    python -m bench.ab "" --python ../venv312/bin/python      # another Python vs this venv's

This machine's speed drifts by 15-30 % between whole `bench/run.py` runs, more than the effect of
most single changes. Here two gateways (A and B, each one worker with production settings,
differing only by the environment variables given) run side by side against one upstream, and
each round sends a short burst to direct, A and B back to back (A and B swap places every
round). Differences are paired by round before the median is taken, so drift cancels out.
With `--base REV`, gateway A runs the code of commit REV (a temporary git worktree, on this
checkout's virtualenv) and B this checkout's code: a code change measured like a setting.
With `--python PATH`, gateway A runs on that interpreter (a virtualenv with requirements.txt
installed) and B on this checkout's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import stack
from bench.environment import dataset, flush_bench_redis, manage, resolve_storage
from bench.run import measure, spec_for
from bench.run import parse_args as bench_args
from bench.stack import Served

Run = dict[str, Any]


def environment(assignments: str) -> dict[str, str]:
    """ "A=1 B=two" -> {"A": "1", "B": "two"}."""
    pairs = [item.split("=", 1) for item in assignments.split()]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"expected NAME=value assignments, got {assignments!r}")
    return dict(pairs)  # type: ignore[arg-type]


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def compare(
    targets: dict[str, Served], upstream: Served, *, clients: int, is_stream: bool, args: Any
) -> None:
    runs: dict[str, list[Run]] = {name: [] for name in ("direct", "A", "B")}
    for round_no in range(args.rounds):
        order = ("direct", "A", "B") if round_no % 2 == 0 else ("direct", "B", "A")
        for name in order:
            target = targets[name]
            spec = spec_for(target, is_stream=is_stream, concurrency=clients, args=args)
            runs[name].append(measure(target, upstream, spec, scenario="ab", round_no=round_no))
    latency = "ttfb_p50_ms" if is_stream else "p50_ms"
    plural = "" if clients == 1 else "s"
    kind = "stream" if is_stream else "chat"
    print(f"\n{kind}, {clients} client{plural}, {args.rounds} rounds")
    for name, got in runs.items():
        print(
            f"  {name:<6} {_median(got, 'rps'):>8.0f} rps  {latency} {_median(got, latency):.3f}"
            f"  p99 {_median(got, 'p99_ms'):.3f} ms  cpu {_median(got, 'cpu_ms_per_req'):.3f}"
            f" ms/req  errors {sum(run['errors'] for run in got)}"
        )
    pairs = list(zip(runs["A"], runs["B"], strict=True))
    rps_ratio = statistics.median(b["rps"] / a["rps"] for a, b in pairs)
    latency_diff = statistics.median(b[latency] - a[latency] for a, b in pairs)
    cpu_diff = statistics.median(b["cpu_ms_per_req"] - a["cpu_ms_per_req"] for a, b in pairs)
    b_faster = sum(b["rps"] > a["rps"] for a, b in pairs)
    print(
        f"  B vs A, paired: rps ×{rps_ratio:.3f} (B ahead in {b_faster}/{len(pairs)} rounds), "
        f"{latency} {latency_diff:+.3f} ms, cpu {cpu_diff:+.3f} ms/req"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help='gateway A\'s extra environment, e.g. "NAME=value NAME2=v"')
    parser.add_argument("--versus", default="", help="gateway B's extra environment")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--stream", action="store_true", help="streamed requests")
    parser.add_argument("--base", help="run gateway A on the code of this git commit")
    parser.add_argument("--python", default=sys.executable, help="gateway A's interpreter")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=1.0, help="measured seconds per burst")
    args = parser.parse_args(argv)
    defaults = bench_args([])
    args.warmup, args.slow_duration = 0.3, defaults.slow_duration
    args.database_url, args.redis_url = defaults.database_url, defaults.redis_url
    args.big_database_url = defaults.big_database_url
    return args


@contextlib.contextmanager
def code_of(revision: str | None) -> Iterator[Path]:
    """This checkout, or a temporary git worktree of `revision` (removed afterwards)."""
    if revision is None:
        yield stack.PROJECT_ROOT
        return
    with tempfile.TemporaryDirectory(prefix="aicc-ab-") as parent:
        worktree = Path(parent) / "code"
        git = ["git", "-C", str(stack.PROJECT_ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(worktree), revision], check=True)
        try:
            yield worktree
        finally:
            subprocess.run([*git, "remove", "--force", str(worktree)], check=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    storage = resolve_storage(args)
    manage(storage["database_url"], storage["redis_url"], "migrate", "--noinput")
    flush_bench_redis(storage["redis_url"])
    key = dataset(storage["database_url"], storage["redis_url"], "small")["keys"][0]
    targets: dict[str, Served] = {}
    with code_of(args.base) as base_code:
        try:
            upstream = targets["direct"] = stack.start_upstream()
            for name, assignments, code_dir, python in (
                ("A", args.a, base_code, args.python),
                ("B", args.versus, stack.PROJECT_ROOT, sys.executable),
            ):
                targets[name] = stack.start_gateway(
                    name,
                    workers=1,
                    database_url=storage["database_url"],
                    redis_url=storage["redis_url"],
                    upstream_url=upstream.base_url,
                    api_key=key,
                    extra_env=environment(assignments),
                    code_dir=code_dir,
                    python=python,
                )
            a_code = f" at {args.base}" if args.base else ""
            if args.python != sys.executable:
                a_code += f" on {args.python}"
            print(f"A: {args.a or '(defaults)'}{a_code}   B: {args.versus or '(defaults)'}")
            for clients in args.clients:
                compare(targets, upstream, clients=clients, is_stream=args.stream, args=args)
        finally:
            for served in reversed(targets.values()):
                served.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
