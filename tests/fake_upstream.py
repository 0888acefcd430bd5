"""Run the fake OpenAI-compatible LLM upstream: the only stand-in the tests and benchmark use.

`python -m tests.fake_upstream --host 127.0.0.1 --port 0` serves `make_app()` (behaviour and
fault models are described in `tests/fake_upstream_app.py`) and prints `READY <port>` on stdout
once listening, nothing else. `FakeUpstream` runs it as a subprocess on a free port with the
control API as methods; `fake_upstream_fixture` is the body of the session-scoped
`fake_upstream` pytest fixture.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.fake_upstream_app import FAULT_MODES, MODEL_IDS, make_app

__all__ = ["FAULT_MODES", "MODEL_IDS", "FakeUpstream", "fake_upstream_fixture", "make_app"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --- running it -------------------------------------------------------------------------------


async def _serve_forever(host: str, port: int, *, litellm_cost: bool) -> None:
    runner = web.AppRunner(
        make_app(litellm_cost=litellm_cost), access_log=None, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound_port = runner.addresses[0][1]
    print(f"READY {bound_port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--litellm-cost", action="store_true",
                        default=os.environ.get("AICC_FAKE_LITELLM_COST") == "1",
                        help="add x-litellm-response-cost to answers")  # fmt: skip
    args = parser.parse_args(argv)
    serve = _serve_forever(args.host, args.port, litellm_cost=args.litellm_cost)
    try:
        import uvloop  # optional: a faster loop makes the fake a smaller share of benchmarks
    except ImportError:
        asyncio.run(serve)
    else:
        uvloop.run(serve)


class FakeUpstream:
    """The fake upstream as a subprocess on a free port, with its control API as methods."""

    def __init__(self, *, litellm_cost: bool = False, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 20.0) -> None:  # fmt: skip
        self.litellm_cost = litellm_cost
        self.env = env or {}
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        """Base URL without a path, e.g. http://127.0.0.1:40123."""
        if not self.port:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The OpenAI base URL clients and gateways are configured with (`<url>/v1`)."""
        return f"{self.url}/v1"

    def start(self) -> FakeUpstream:
        command = [sys.executable, "-m", "tests.fake_upstream", "--port", "0"]
        if self.litellm_cost:
            command.append("--litellm-cost")
        handle, log_name = tempfile.mkstemp(prefix="fake-upstream-", suffix=".log")
        self.log_path = Path(log_name)
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=handle, text=True,
            env={**os.environ, **self.env},
        )  # fmt: skip
        os.close(handle)
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout_s
        line = ""
        while not line and self.process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                line = self.process.stdout.readline()
        if not line.startswith("READY "):
            log_tail = self.log_path.read_text(errors="replace")[-4000:]
            self.stop()
            raise RuntimeError(f"fake upstream did not start: {line!r}\n{log_tail}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        self.process = None
        self.port = 0

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """{total, llm_calls, by_path, recent: [{method, path, headers, body}], fault}."""
        return httpx.get(f"{self.url}/_control/stats").raise_for_status().json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_control/reset").raise_for_status()

    def set_fault(self, mode: str, count: int | None = 1) -> None:
        """Fail the next `count` LLM requests of any model (`None`: until `reset`)."""
        response = httpx.post(f"{self.url}/_control/fault", json={"mode": mode, "count": count})
        response.raise_for_status()

    async def astats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.url}/_control/stats")).raise_for_status().json()

    async def areset(self) -> None:
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.url}/_control/reset")).raise_for_status()

    async def aset_fault(self, mode: str, count: int | None = 1) -> None:
        async with httpx.AsyncClient() as client:
            body = {"mode": mode, "count": count}
            (await client.post(f"{self.url}/_control/fault", json=body)).raise_for_status()


def fake_upstream_fixture() -> Iterator[FakeUpstream]:
    """Body of the session-scoped `fake_upstream` fixture: one subprocess for the whole run."""
    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
