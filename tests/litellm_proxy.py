"""Run a real LiteLLM proxy between a client and the fake upstream.

LiteLLM lives in its own virtualenv (`.cache/litellm-venv`, ~750 MB, about 80 s to install)
so its pins never touch the project's. The proxy runs in master-key mode with no database:
LiteLLM's database mode downloads Prisma engines at start-up, so the child gets a whitelisted
environment (no DATABASE_URL, DATABASE_HOST..., REDIS_URL, OPENAI_API_KEY, proxies) plus
`LITELLM_LOCAL_MODEL_COST_MAP=True` so it does not fetch its price map from GitHub. Usage
telemetry is off by default since LiteLLM 1.107 (the `--telemetry` flag is a hidden no-op in
1.108.7), and no LITELLM_TELEMETRY_* variable reaches the child.

    proxy = start_litellm(fake.url)            # fake: tests.fake_upstream.FakeUpstream
    client = openai.OpenAI(base_url=proxy.api_base, api_key=proxy.master_key)
    ...
    proxy.stop()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LITELLM_VERSION = "1.108.7"
# Releases 1.82.7 and 1.82.8 were published compromised; refuse them whatever the pin says.
_REFUSED_VERSIONS = frozenset({"1.82.7", "1.82.8"})
VENV_DIR = PROJECT_ROOT / ".cache" / "litellm-venv"
MASTER_KEY = "sk-aicc-litellm-master-0000"
# The key LiteLLM presents to the fake upstream; tests assert it (not the client's) arrives.
UPSTREAM_API_KEY = "sk-fake-upstream-key"
MODEL_NAMES = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "llama3-local")
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class LiteLLMError(RuntimeError):
    """LiteLLM could not be installed or started; the message names the log to read."""


def base_python() -> Path:
    """The interpreter this process's virtualenv was made from. LiteLLM's venv is made from it
    too, so a benchmark compares the two proxies on the same Python build."""
    major, minor = sys.version_info[:2]
    return Path(sys.base_prefix) / "bin" / f"python{major}.{minor}"


def _venv_home(venv_dir: Path) -> str | None:
    config = venv_dir / "pyvenv.cfg"
    if not config.exists():
        return None
    for line in config.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "home":
            return value.strip()
    return None


def installed_version(venv_dir: Path = VENV_DIR) -> str | None:
    """The litellm version in the venv, or None when the venv or the package is missing."""
    python = venv_dir / "bin" / "python"
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def is_installed(venv_dir: Path = VENV_DIR) -> bool:
    """LITELLM_VERSION is installed, in a venv made from this process's interpreter."""
    is_same_python = _venv_home(venv_dir) == str(base_python().parent)
    return is_same_python and installed_version(venv_dir) == LITELLM_VERSION


def ensure_litellm_installed(venv_dir: Path = VENV_DIR) -> Path:
    """Install `litellm[proxy]==LITELLM_VERSION` in its own venv unless there; return the CLI."""
    if LITELLM_VERSION in _REFUSED_VERSIONS:
        raise LiteLLMError(f"litellm {LITELLM_VERSION} is a known-compromised release")
    cli = venv_dir / "bin" / "litellm"
    if is_installed(venv_dir) and cli.exists():
        return cli
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base_python(), "-m", "venv", str(venv_dir)], check=True)
    install = subprocess.run(
        [venv_dir / "bin" / "python", "-m", "pip", "install", "--quiet",
         f"litellm[proxy]=={LITELLM_VERSION}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if install.returncode != 0 or installed_version(venv_dir) != LITELLM_VERSION:
        raise LiteLLMError(f"installing litellm failed:\n{install.stderr[-4000:]}")
    return cli


def write_config(upstream_api_base: str, directory: Path, *, master_key: str = MASTER_KEY) -> Path:
    """Write a config.yaml routing every MODEL_NAMES entry to `openai/<name>` on the upstream."""
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": upstream_api_base,
                    "api_key": UPSTREAM_API_KEY,
                },
            }
            for name in MODEL_NAMES
        ],
        "general_settings": {"master_key": master_key},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def litellm_env() -> dict[str, str]:
    """The child's whole environment: a whitelist, so no database or Redis URL can leak in."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiteLLMProxy:
    """A started LiteLLM proxy process; `stop()` ends it."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, master_key: str, workdir: Path
    ) -> None:
        self.process = process
        self.port = port
        self.master_key = master_key
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "litellm.log"
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What an OpenAI client is configured with (`<url>/v1`)."""
        return f"{self.url}/v1"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LiteLLMProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_litellm(
    upstream_url: str,
    port: int = 0,
    *,
    master_key: str = MASTER_KEY,
    startup_timeout_s: float = 120.0,
) -> LiteLLMProxy:
    """Start LiteLLM in front of `upstream_url` (with or without `/v1`) and wait until it is live.

    `port=0` picks a free port. Raises LiteLLMError (with the log's tail) if the proxy exits or
    does not answer /health/liveliness within `startup_timeout_s`.
    """
    cli = ensure_litellm_installed()
    upstream_api_base = upstream_url.rstrip("/")
    if not upstream_api_base.endswith("/v1"):
        upstream_api_base += "/v1"
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="aicc-litellm-"))
    config_path = write_config(upstream_api_base, workdir, master_key=master_key)
    started_at = time.monotonic()
    with (workdir / "litellm.log").open("wb") as log:
        process = subprocess.Popen(
            [cli, "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=litellm_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = LiteLLMProxy(process, port, master_key, workdir)
    deadline = started_at + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LiteLLMError(f"litellm exited with {process.returncode}:\n{proxy.log_tail()}")
        try:
            if httpx.get(f"{proxy.url}/health/liveliness", timeout=1.0).status_code == 200:
                proxy.startup_s = time.monotonic() - started_at
                return proxy
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.25)
    proxy.stop()
    raise LiteLLMError(f"litellm not live after {startup_timeout_s} s:\n{proxy.log_tail()}")
