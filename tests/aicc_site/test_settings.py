"""Settings come from the environment; a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.live import PROJECT_ROOT

GOOD_SECRET = "s" * 50


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AICC_", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AICC_UPSTREAM_URL", "ftp://nowhere", "AICC_UPSTREAM_URL must be a URL"),
        ("AICC_UPSTREAM_READ_TIMEOUT_S", "soon", "AICC_UPSTREAM_READ_TIMEOUT_S must be a number"),
        ("AICC_MAX_BODY_BYTES", "12", "AICC_MAX_BODY_BYTES must be >= 1024"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL must be a URL"),
        ("REDIS_URL", "http://x", "REDIS_URL must be a URL"),
        ("SECRET_KEY", "", "SECRET_KEY must be set"),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 32 characters"),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_message_naming_it(
    name: str, value: str, expected: str
) -> None:
    result = run_manage("check", env={"SECRET_KEY": GOOD_SECRET, name: value})
    assert result.returncode != 0
    assert expected in result.stderr


def test_deploy_check_reports_no_errors_with_production_settings() -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "ERROR",
        env={"SECRET_KEY": "a-long-random-production-secret-" + "k" * 40, "DEBUG": "false"},
    )
    assert result.returncode == 0, result.stderr


def test_env_example_names_every_variable_settings_reads() -> None:
    import re

    settings_text = (PROJECT_ROOT / "aicc_site" / "settings.py").read_text()
    read = set(re.findall(r'env_[a-z]+\(\s*"([A-Z_]+)"', settings_text))
    documented = set(
        re.findall(r"^([A-Z_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert read, "no env reads found: the pattern is stale"
    assert read - documented == set()
