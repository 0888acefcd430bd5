"""Durations written the way operators type them: `30d`, `24h`, `15m`, `90s`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_RE = re.compile(r"^\s*(?P<amount>\d+)\s*(?P<unit>[smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`30d` -> 30 days. Raises ValueError naming the accepted forms."""
    match = _DURATION_RE.match(text.lower())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number and s, m, h or d, e.g. 24h or 30d"
        )
    return timedelta(seconds=int(match["amount"]) * _UNIT_SECONDS[match["unit"]])


def format_duration(duration: timedelta) -> str:
    """The shortest exact form: 86400 s -> `1d`, 5400 s -> `90m`."""
    seconds = int(duration.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
