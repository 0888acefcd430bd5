"""The processes a benchmark run measures, all on 127.0.0.1: the fake upstream, AICC gateways
(uvicorn, production settings) and, when installed, a LiteLLM proxy.

`Served` wraps one started server with what the report needs from it: where to send requests,
which key to present, and its processes' CPU seconds and peak RSS (VmHWM) from /proc.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_live(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@dataclass
class Served:
    """A server under test. `pids()` are the processes doing the work (workers, not a master)."""

    name: str
    base_url: str  # without /v1
    api_key: str | None
    root_pid: int
    stop: Callable[[], None]
    log_path: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def pids(self) -> list[int]:
        try:
            root = psutil.Process(self.root_pid)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        # uvicorn --workers N: the master only supervises; count the children that serve.
        return [c.pid for c in children] or [root.pid]

    def all_pids(self) -> list[int]:
        try:
            root = psutil.Process(self.root_pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the root and every child (a supervising master included)."""
        total = 0.0
        for pid in self.all_pids():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def peak_rss_mb(self) -> list[float]:
        """Lifetime peak resident set (VmHWM) of each serving process, in MB."""
        peaks = []
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    def headers(self, api_key: str | None = None) -> dict[str, str]:
        key = api_key or self.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}


def start_upstream() -> Served:
    from tests.fake_upstream import FakeUpstream

    fake = FakeUpstream().start()
    assert fake.process is not None
    return Served("direct", fake.url, None, fake.process.pid, fake.stop)


def gateway_env(*, database_url: str, redis_url: str, upstream_url: str) -> dict[str, str]:
    """Production settings: DEBUG off, a real secret, request logging on (to a file)."""
    env = dict(os.environ)
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AICC_UPSTREAM_URL=upstream_url,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if redis_url == "":
        env.pop("REDIS_URL")
    return env


def start_uvicorn(
    name: str,
    app: str,
    env: dict[str, str],
    *,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    health_path: str = "/health",
    timeout_s: float = 60.0,
    code_dir: Path = PROJECT_ROOT,
    python: str = sys.executable,
) -> Served:
    port = free_port()
    command = [
        python,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        *extra,
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    return _start_server(name, command, env, port, health_path, timeout_s, code_dir=code_dir)


def _start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    health_path: str,
    timeout_s: float,
    *,
    code_dir: Path = PROJECT_ROOT,
) -> Served:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=code_dir, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base_url + health_path, process, timeout_s)
    except RuntimeError as exc:
        stop()
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{name} did not start; see {log_path}:\n{tail}") from exc
    return Served(name, base_url, None, process.pid, stop, log_path=log_path)


def start_gateway(
    name: str,
    *,
    workers: int,
    database_url: str,
    redis_url: str,
    upstream_url: str,
    api_key: str,
    extra_env: dict[str, str] | None = None,
    code_dir: Path = PROJECT_ROOT,
    python: str = sys.executable,
) -> Served:
    """`code_dir`: the checkout whose code the gateway runs (e.g. a git worktree of another
    commit, for bench.ab --base); `python`: the interpreter (of a virtualenv with
    requirements.txt installed) it runs on, this checkout's by default."""
    env = gateway_env(database_url=database_url, redis_url=redis_url, upstream_url=upstream_url)
    env.update(extra_env or {})
    served = start_uvicorn(
        name, "aicc_site.asgi:application", env, workers=workers, code_dir=code_dir, python=python
    )
    served.api_key = api_key
    # With several workers, each must have loaded the app: wait until all children exist.
    deadline = time.monotonic() + 30
    while workers > 1 and len(served.pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return served


def start_forwarder(upstream_url: str) -> Served:
    """The ceiling: the smallest forwarder on the gateway's own server and client (uvicorn on
    uvloop + httptools, aiohttp), with no feature at all (bench/probes/forward_app.py)."""
    env = {**os.environ, "PROBE_UPSTREAM_URL": upstream_url, "PROBE_CLIENT": "aiohttp"}
    return start_uvicorn("forwarder", "bench.probes.forward_app:application", env)


def litellm_available() -> tuple[bool, str]:
    helper = PROJECT_ROOT / "tests" / "litellm_proxy.py"
    if not helper.exists():
        return False, "tests/litellm_proxy.py is missing"
    from tests import litellm_proxy

    if not litellm_proxy.is_installed():
        return False, (
            f"LiteLLM {litellm_proxy.LITELLM_VERSION} is not installed in "
            f"{litellm_proxy.VENV_DIR}, on this virtualenv's Python "
            f"({litellm_proxy.base_python()}) (python -c 'from tests.litellm_proxy import "
            "ensure_litellm_installed as e; e()')"
        )
    return True, litellm_proxy.LITELLM_VERSION


def start_litellm_proxy(upstream_url: str) -> Served:
    from tests import litellm_proxy

    proxy = litellm_proxy.start_litellm(upstream_url)
    served = Served(
        "litellm",
        proxy.url,
        proxy.master_key,
        proxy.process.pid,
        proxy.stop,
        log_path=proxy.log_path,
    )
    served.notes["version"] = litellm_proxy.LITELLM_VERSION
    served.notes["startup_s"] = f"{proxy.startup_s:.1f}"
    return served
