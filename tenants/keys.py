"""The API key format: `aicc_<key id>_<secret><checksum>`.

- `key id` (12 chars, lowercase base36) is the key's stable public id; it survives rotation.
- `secret` (32 chars, base62) is ~190 bits of randomness; only its SHA-256 digest is stored.
- `checksum` (6 chars) is a CRC32 of everything before it, so a mistyped or forged key is
  rejected before any storage is touched.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "aicc_"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
_BASE36 = string.digits + string.ascii_lowercase
_BASE62 = string.digits + string.ascii_letters
_KEY_RE = re.compile(
    rf"^{PREFIX}(?P<key_id>[0-9a-z]{{{KEY_ID_LENGTH}}})_"
    rf"(?P<secret>[0-9A-Za-z]{{{SECRET_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})$"
)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    digest: str


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    chars = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def digest(raw_key: str) -> str:
    # Plain SHA-256 suffices: the secret is random and long, so there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_key_id() -> str:
    return "".join(secrets.choice(_BASE36) for _ in range(KEY_ID_LENGTH))


def compose(key_id: str) -> str:
    """A new raw key for `key_id`. Returned to the caller once; never stored."""
    body = f"{PREFIX}{key_id}_" + "".join(secrets.choice(_BASE62) for _ in range(SECRET_LENGTH))
    return body + _checksum(body)


def parse(raw_key: str) -> ParsedKey | None:
    """The key id and digest of a well-formed key, or None (no storage touched)."""
    match = _KEY_RE.match(raw_key)
    if match is None:
        return None
    if not secrets.compare_digest(_checksum(raw_key[:-CHECKSUM_LENGTH]), match["checksum"]):
        return None
    return ParsedKey(key_id=match["key_id"], digest=digest(raw_key))


def display_hint(raw_key: str) -> str:
    """What the admin may show after creation: the public part and the last four characters."""
    return f"{raw_key[: len(PREFIX) + KEY_ID_LENGTH]}_…{raw_key[-4:]}"


def looks_like_key(raw_key: str) -> bool:
    return raw_key.startswith(PREFIX)
