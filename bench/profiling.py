"""Where the gateway's CPU goes under load: py-spy samples the worker while 64 clients send
chat requests (first half plain, second half streamed), and the collapsed stacks are summarised.

Writes bench/results/profile.txt (collapsed stacks, which speedscope.app and flamegraph.pl open)
and returns the top frames by own time and the share of time under each layer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec, run_load_sync
from bench.stack import RESULTS_DIR, Served

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:]*)(?::\d+)?\)$")
# Buckets for inclusive time, first match wins (checked from the leaf towards the root).
LAYERS = (
    ("json (orjson)", "orjson"),
    ("logging (structlog)", "structlog"),
    ("redis client", "redis/"),
    ("aiohttp upstream client", "aiohttp/"),
    ("uvicorn + httptools (server)", "uvicorn/"),
    ("Django ORM / asgiref (sync_to_async)", "django/"),
    ("Django ORM / asgiref (sync_to_async)", "asgiref/"),
    ("gateway code", "gateway/"),
    ("tenants / billing code", "tenants/"),
    ("tenants / billing code", "billing/"),
    ("asyncio / uvloop event loop", "asyncio/"),
)


def _py_spy() -> str | None:
    candidate = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def _frame(raw: str) -> tuple[str, str]:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip(), ""
    path = match["file"]
    short = path.split("site-packages/")[-1] if "site-packages/" in path else path
    return match["func"], short


def summarise(collapsed: str, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    gateway: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        func, path = frames[-1]
        own[f"{func} ({path})"] += count
        for _, path in reversed(frames):
            layer = next((name for name, marker in LAYERS if marker in path), None)
            if layer:
                layers[layer] += count
                break
        else:
            layers["other"] += count
        # Inclusive: the innermost gateway function, with whatever library time it caused.
        for func, path in reversed(frames):
            if path.startswith("gateway/") or "/gateway/" in path:
                gateway[f"{func} ({path.rsplit('gateway/', 1)[-1]})"] += count
                break
    return {
        "samples": total,
        "top_own": [(name, count / total) for name, count in own.most_common(top)] if total else [],
        "layers": [(name, count / total) for name, count in layers.most_common()] if total else [],
        "gateway_inclusive": [(n, c / total) for n, c in gateway.most_common(top)] if total else [],
    }


def profile_under_load(
    target: Served, body: bytes, stream_body: bytes, *, seconds: float
) -> dict[str, Any]:
    py_spy = _py_spy()
    if py_spy is None:
        return {"summary": "py-spy not installed (pip install py-spy): profile skipped"}
    pid = target.pids()[0]
    out = RESULTS_DIR / "profile.txt"
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    half = seconds / 2
    for is_stream, payload in ((False, body), (True, stream_body)):
        run_load_sync(
            LoadSpec(
                url=target.chat_url,
                body=payload,
                is_stream=is_stream,
                concurrency=64,
                duration_s=half,
                warmup_s=0.0,
                header_sets=[target.headers()],
            )
        )
    _, stderr = recorder.communicate(timeout=seconds + 30)
    if not out.exists():
        return {"summary": f"py-spy failed: {stderr.decode(errors='replace')[-500:]}"}
    found = summarise(out.read_text())
    lines = [
        f"Profile of {target.name} pid {pid}: {found['samples']} samples -> {out}",
        "  share of samples by layer (innermost recognised frame):",
    ]
    lines += [f"    {share:6.1%}  {name}" for name, share in found["layers"]]
    lines.append("  innermost gateway function on the stack (inclusive of the libraries it calls):")
    lines += [f"    {share:6.1%}  {name}" for name, share in found["gateway_inclusive"]]
    lines.append("  top frames by own time:")
    lines += [f"    {share:6.1%}  {name}" for name, share in found["top_own"]]
    return {**found, "summary": "\n".join(lines)}
