"""Master keys from configuration: operator credentials that work across tenants.

`AICC_MASTER_KEYS` and `AICC_DEPRECATED_MASTER_KEYS` are comma-separated in the environment (lists
in settings). Deprecated ones are still accepted, with a warning in the log, so an operator can
roll a master key without downtime. Keys are compared by SHA-256 digest in constant time against
every configured key; logs and audit entries only ever carry a short fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from django.conf import settings

from tenants import keys

logger = structlog.get_logger(__name__)

MIN_LENGTH = 32


@dataclass(frozen=True, slots=True)
class MasterKeyMatch:
    fingerprint: str  # first 12 hex chars of the SHA-256 digest: identifies, reveals nothing
    is_deprecated: bool

    @property
    def actor_key_id(self) -> str:
        return f"master:{self.fingerprint}"


def parse_master_keys(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Settings value (a list, or a comma-separated string) -> the keys, blanks dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item and item.strip())


def fingerprint(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()[:12]


def configured() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(current, deprecated) master keys from settings."""
    return (
        parse_master_keys(getattr(settings, "AICC_MASTER_KEYS", [])),
        parse_master_keys(getattr(settings, "AICC_DEPRECATED_MASTER_KEYS", [])),
    )


def master_key_verify(raw_key: str) -> MasterKeyMatch | None:
    """The match for a configured master key, or None. A deprecated key logs a warning."""
    current, deprecated = configured()
    if not (current or deprecated) or not raw_key:
        return None
    presented = hashlib.sha256(raw_key.encode()).digest()
    found: MasterKeyMatch | None = None
    # No early exit: every configured key is compared so timing says nothing about which matched.
    for candidates, is_deprecated in ((current, False), (deprecated, True)):
        for candidate in candidates:
            if hmac.compare_digest(presented, hashlib.sha256(candidate.encode()).digest()):
                found = found or MasterKeyMatch(fingerprint(raw_key), is_deprecated)
    if found is not None and found.is_deprecated:
        logger.warning("deprecated_master_key_used", master_key=found.fingerprint)
    return found


def configuration_problems(current: Iterable[str], deprecated: Iterable[str]) -> list[str]:
    """What is wrong with the configured master keys (used by the system check)."""
    current, deprecated = list(current), list(deprecated)
    problems = []
    for name, values in (
        ("AICC_MASTER_KEYS", current),
        ("AICC_DEPRECATED_MASTER_KEYS", deprecated),
    ):
        for value in values:
            if len(value) < MIN_LENGTH:
                problems.append(
                    f"{name} has a key of {len(value)} characters (fingerprint "
                    f"{fingerprint(value)}); use at least {MIN_LENGTH} random characters"
                )
            if keys.looks_like_key(value):
                problems.append(
                    f"{name} has a key starting with {keys.PREFIX!r} (fingerprint "
                    f"{fingerprint(value)}); that prefix belongs to tenant keys"
                )
    if set(current) & set(deprecated):
        problems.append("a key is listed in both AICC_MASTER_KEYS and AICC_DEPRECATED_MASTER_KEYS")
    return problems
