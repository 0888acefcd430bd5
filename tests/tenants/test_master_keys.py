from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tenants import master_keys
from tenants.durations import format_duration, parse_duration

CURRENT = "m" * 40
OLD = "o" * 40


def test_parse_accepts_comma_separated_strings_and_lists() -> None:
    assert master_keys.parse_master_keys(f" {CURRENT} ,, {OLD} ") == (CURRENT, OLD)
    assert master_keys.parse_master_keys([CURRENT, ""]) == (CURRENT,)
    assert master_keys.parse_master_keys(None) == ()


@override_settings(AICC_MASTER_KEYS=[CURRENT], AICC_DEPRECATED_MASTER_KEYS=f"{OLD}")
def test_current_and_deprecated_master_keys_verify_others_do_not(caplog: Any) -> None:
    current = master_keys.master_key_verify(CURRENT)
    assert current is not None and not current.is_deprecated
    deprecated = master_keys.master_key_verify(OLD)
    assert deprecated is not None and deprecated.is_deprecated
    assert deprecated.actor_key_id == f"master:{master_keys.fingerprint(OLD)}"
    assert OLD not in deprecated.actor_key_id
    assert master_keys.master_key_verify("x" * 40) is None
    assert master_keys.master_key_verify("") is None


def test_no_master_keys_configured_means_none_verify() -> None:
    assert master_keys.master_key_verify(CURRENT) is None


@override_settings(AICC_MASTER_KEYS=["short"])
def test_a_short_master_key_fails_the_system_check() -> None:
    with pytest.raises(SystemCheckError) as error:
        call_command("check")
    assert "tenants.E001" in str(error.value)
    assert master_keys.fingerprint("short") in str(error.value)
    assert "'short'" not in str(error.value)


def test_durations_parse_and_format() -> None:
    assert parse_duration("30d").total_seconds() == 30 * 86400
    assert parse_duration("24h").total_seconds() == 86400
    assert parse_duration("15m").total_seconds() == 900
    assert format_duration(parse_duration("90m")) == "90m"
    assert format_duration(parse_duration("48h")) == "2d"
    for bad in ("", "10", "1w", "-1d", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
