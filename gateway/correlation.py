"""Correlation ids: taken from the client when safe, else minted; bound to every log line."""

from __future__ import annotations

import re
import uuid

HEADER = "x-correlation-id"
_SAFE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def correlation_id_from(headers: dict[str, str]) -> str:
    candidate = headers.get(HEADER)
    if candidate and _SAFE.match(candidate):
        return candidate
    return str(uuid.uuid4())
