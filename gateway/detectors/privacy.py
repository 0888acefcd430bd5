"""Privacy detector: which kinds of personal data and credentials a text contains.

Pure, no I/O. The result names KINDS and counts, never the matched values, so it is safe to log.
Numbers are validated (Luhn for cards, mod-97 for IBANs, SSA ranges for SSNs, ipaddress for
IPv6) so that order numbers and look-alikes do not count. Tenant patterns are compiled once
per distinct pattern list and reported as `tenant:<name>`.

Decisions worth knowing:
- A dotted quad counts as an IPv4 address unless a version word (version, release, build,
  firmware, driver, or a `==`/`>=` pin) stands right before it: `version 1.2.3.4` is not an IP.
- Phone numbers need a `+country` prefix, the North American (415) 555-2671 / 415-555-2671
  shape, or a phone word (phone, tel, mobile, call ...) right before them; bare digit runs are
  order numbers far more often than phone numbers.
- Card candidates must start with 2-6 (the major networks), be 13-19 digits grouped
  consistently, and pass Luhn.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gateway.detectors.checksums import IBAN_LENGTHS, iban_is_valid, luhn_is_valid, ssn_is_valid
from gateway.detectors.privacy_patterns import (
    CARD_RE,
    COLON_PAIR_RE,
    CONTEXT_PHONE_RE,
    EMAIL,
    EMAIL_RE,
    HEX_COLON,
    HEX_DIGITS,
    IBAN,
    IBAN_RE,
    INTL_PHONE_RE,
    IP_ADDRESS,
    IPV4_RE,
    IPV6_RE,
    JWT,
    JWT_RE,
    KEYWORD_REACH,
    LOCAL_PART_CHARS,
    NANP_PHONE_RE,
    NUMBER_RUN_RE,
    PAYMENT_CARD,
    PHONE,
    PHONE_WORDS,
    SECRET_KINDS,
    SECRET_RES,
    SSN_CONTEXT_RE,
    SSN_RE,
    TENANT_KIND_PREFIX,
    TENANT_NAME_RE,
    US_SSN,
    VERSION_BEFORE_RE,
)
from gateway.detectors.text import ascii_view, bounded, find_all


@dataclass(frozen=True, slots=True)
class PrivacyResult:
    """Kinds found and how often; never the values. `counts` is sorted by kind."""

    counts: tuple[tuple[str, int], ...]
    is_truncated: bool = False

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self.counts)

    @property
    def has_pii(self) -> bool:
        return bool(self.counts)

    @property
    def has_secret(self) -> bool:
        return any(kind in SECRET_KINDS for kind, _ in self.counts)

    def count(self, kind: str) -> int:
        return next((number for found, number in self.counts if found == kind), 0)


@dataclass(frozen=True, slots=True)
class TenantPattern:
    name: str
    pattern: re.Pattern[str]


@lru_cache(maxsize=256)
def _compile_tenant_patterns(patterns: tuple[tuple[str, str], ...]) -> tuple[TenantPattern, ...]:
    compiled = []
    for name, regex in patterns:
        if not TENANT_NAME_RE.fullmatch(name):
            raise ValueError(f"tenant pattern name {name!r} must be 1-64 of [A-Za-z0-9_.-]")
        try:
            compiled.append(TenantPattern(name=name, pattern=re.compile(regex)))
        except re.error as exc:
            raise ValueError(f"tenant pattern {name!r} is not a valid regex: {exc}") from exc
    return tuple(compiled)


def compile_tenant_patterns(patterns: Iterable[tuple[str, str]]) -> tuple[TenantPattern, ...]:
    """Compile (name, regex) pairs, cached per distinct list; ValueError names the bad one.

    Call it when a tenant saves its patterns to reject bad ones early; `detect_pii` calls it too.
    """
    return _compile_tenant_patterns(tuple((name, regex) for name, regex in patterns))


class _Spans:
    """Character ranges already claimed by a stronger match (a card is not also a phone)."""

    __slots__ = ("_ranges",)

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []

    def claim(self, start: int, end: int) -> None:
        self._ranges.append((start, end))

    def overlaps(self, start: int, end: int) -> bool:
        return any(start < stop and begin < end for begin, stop in self._ranges)


def _digits(value: str) -> str:
    return "".join(char for char in value if "0" <= char <= "9")


class _Scan:
    """One text being scanned: the text, its anchor views, the counts and the claimed spans.

    Python's regex engine costs tens of nanoseconds per character for patterns that do not
    start with a literal, so no pattern here is searched over the whole text. Cheap C-speed
    searches (str.find, bytes.find on a digit/upper-case "shape") find anchors, and each
    pattern is matched only at or near them.
    """

    __slots__ = ("counts", "is_ascii", "shape", "spans", "text", "view")

    def __init__(self, text: str) -> None:
        self.text = text
        self.is_ascii = text.isascii()
        # Lower-cased only where keywords are looked for (see _number_windows), not whole.
        self.view = ascii_view(text)
        self.shape = self.view.encode("ascii").translate(_SHAPE)
        self.counts: dict[str, int] = {}
        self.spans = _Spans()

    def add(self, kind: str, start: int, end: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.spans.claim(start, end)


# Digits become b"0" and upper-case letters b"A"; everything else stays as it is.
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
_ZERO = ord("0")


def _scan_secrets(scan: _Scan) -> None:
    text = scan.text
    for kind, finder, pattern in SECRET_RES:
        position = 0
        while (found := finder.search(text, position)) is not None:
            match = pattern.match(text, found.start())
            if match is None:
                position = found.end()
                continue
            scan.add(kind, *match.span())
            position = match.end()


def _scan_digit_runs(scan: _Scan) -> None:
    """Cards, North American phones and SSNs all contain a run of four digits."""
    text, shape, spans = scan.text, scan.shape, scan.spans
    length = len(shape)
    index = shape.find(b"0000")
    while index != -1:
        run_end = index + 4
        while run_end < length and shape[run_end] == _ZERO:
            run_end += 1
        if not spans.overlaps(index, run_end):
            # A card has 13+ digits within its 23 characters; a year or an amount does not.
            if text[index] in "23456" and shape.count(b"0", index, index + 23) >= 13:
                card = CARD_RE.match(text, index)
                if card is not None:
                    digits = _digits(card.group())
                    if 13 <= len(digits) <= 19 and luhn_is_valid(digits):
                        scan.add(PAYMENT_CARD, *card.span())
            before = shape[max(0, index - 7) : index]
            if before in (b"000-00-", b"000 00 "):
                ssn = SSN_RE.match(text, index - 7)
                if (
                    ssn is not None
                    and not spans.overlaps(*ssn.span())
                    and ssn_is_valid(ssn.group(1), ssn.group(3), ssn.group(4))
                ):
                    scan.add(US_SSN, *ssn.span())
            elif before[-4:-1] == b"000" and before[-1:] in (b" ", b".", b"-"):
                phone = NANP_PHONE_RE.search(text, max(0, index - 16), run_end + 1)
                if phone is not None and not spans.overlaps(*phone.span()):
                    scan.add(PHONE, *phone.span())
        index = shape.find(b"0000", run_end)


def _scan_jwts(scan: _Scan) -> None:
    text = scan.text
    index = text.find("J", 2)
    while index != -1:
        if not text.startswith("ey", index - 2):
            index = text.find("J", index + 1)
            continue
        match = JWT_RE.match(text, index - 2)
        if match is None:
            index = text.find("J", index + 3)
            continue
        scan.add(JWT, *match.span())
        index = text.find("J", match.end() + 2)


def _scan_ibans(scan: _Scan) -> None:
    shape = scan.shape
    index = shape.find(b"AA00")
    while index != -1:
        match = IBAN_RE.match(scan.text, index)
        index = shape.find(b"AA00", index + 4)
        if match is None or scan.spans.overlaps(*match.span()):
            continue
        compact = match.group().replace(" ", "")
        # The pattern may run on into a following upper-case word; the country fixes the length.
        expected = IBAN_LENGTHS.get(compact[:2], 0)
        if expected and len(compact) >= expected and iban_is_valid(compact[:expected]):
            scan.add(IBAN, *match.span())


def _number_windows(view: str, shape: bytes) -> list[tuple[int, str]]:
    """Where a keyword may stand before a number of 7+ digits: the 64 characters before each,
    as (offset, lower-cased text).

    Such a number is a run of digits, spaces, brackets, dots and dashes (non-ASCII characters,
    which might be digits, are "?" in the shape) from its first to its last digit, so one
    search on the shape finds every candidate; in prose there are few or none.
    """
    windows = []
    for run in NUMBER_RUN_RE.finditer(shape):
        start, end = run.span()
        if shape.count(b"0", start, end) >= 7:
            window_start = max(0, start - KEYWORD_REACH)
            windows.append((window_start, view[window_start:start].lower()))
    return windows


def _keyword_positions(keyword: str, windows: list[tuple[int, str]]) -> list[int]:
    """Offsets of `keyword` inside one of `windows`, in order, each once."""
    positions: set[int] = set()
    for window_start, lowered in windows:
        index = lowered.find(keyword)
        while index != -1:
            positions.add(window_start + index)
            index = lowered.find(keyword, index + len(keyword))
    return sorted(positions)


def _scan_keyword_numbers(scan: _Scan) -> None:
    """SSNs written without dashes and phones written locally need a word before them.

    Keywords are looked for only in the windows before long numbers (see _number_windows),
    not in the whole text: nine str.find passes over 16 KB cost ~0.1 ms.
    """
    text = scan.text
    windows = _number_windows(scan.view, scan.shape)
    # Nine Unicode digits (which `\d` matches) leave no trace in the ASCII shape.
    lowered = None if scan.is_ascii else scan.view.lower()
    for keyword in ("ssn", "social security"):
        if lowered is None:
            positions = _keyword_positions(keyword, windows)
        else:
            positions = find_all(lowered, keyword)
        for index in positions:
            match = SSN_CONTEXT_RE.match(text, index, index + 60)
            if match is None or scan.spans.overlaps(*match.span(1)):
                continue
            number = match.group(1)
            if ssn_is_valid(number[:3], number[3:5], number[5:]):
                scan.add(US_SSN, *match.span(1))
    for index in find_all(text, "+"):
        match = INTL_PHONE_RE.match(text, index)
        if (
            match is not None
            and not scan.spans.overlaps(*match.span())
            and 8 <= len(_digits(match.group())) <= 15
        ):
            scan.add(PHONE, *match.span())
    if not windows:
        return
    for keyword in PHONE_WORDS:
        for index in _keyword_positions(keyword, windows):
            if scan.shape.find(b"0", index, index + 30) == -1:
                continue
            match = CONTEXT_PHONE_RE.match(text, index, index + 60)
            if match is None or scan.spans.overlaps(*match.span(1)):
                continue
            if 7 <= len(_digits(match.group(1))) <= 15:
                scan.add(PHONE, *match.span(1))


def _scan_emails(scan: _Scan) -> None:
    text = scan.text
    previous_end = 0
    for index in find_all(text, "@"):
        # Walk back over the local part by hand: a regex search around every "@" (decorators,
        # handles) would cost a scan of the whole window each time.
        start = index
        while start > max(previous_end, index - 64) and text[start - 1] in LOCAL_PART_CHARS:
            start -= 1
        if start == index:
            continue
        match = EMAIL_RE.match(text, start, index + 256)
        # A token in a URL's userinfo (https://ghp_...@github.com) is a secret, not an address.
        if match is not None and not scan.spans.overlaps(*match.span()):
            scan.add(EMAIL, *match.span())
            previous_end = match.end()


def _scan_ips(scan: _Scan) -> None:
    text, shape = scan.text, scan.shape
    index = shape.find(b"0.0")
    while index != -1:
        # Three dots within a dotted quad's 15 characters, or it is a decimal or a version.
        if shape.count(b".", index, index + 13) < 2:
            index = shape.find(b"0.0", index + 1)
            continue
        match = IPV4_RE.search(text, max(0, index - 3), index + 16)
        if match is None or match.end() <= index:
            index = shape.find(b"0.0", index + 1)
            continue
        start, end = match.span()
        if not scan.spans.overlaps(start, end) and not VERSION_BEFORE_RE.search(
            scan.view, max(0, start - 20), start
        ):
            scan.add(IP_ADDRESS, start, end)
        index = shape.find(b"0.0", end)
    # Every colon of an address has a neighbour colon with at most four hex digits between;
    # the lone colons of times, labels and "key: value" are never looked at.
    candidates: set[int] = set()
    for pair in COLON_PAIR_RE.finditer(text):
        candidates.add(pair.start())
        candidates.add(pair.start(1))
    previous_end = 0
    for index in sorted(candidates):
        if index < previous_end or index + 1 >= len(text):
            continue
        after = text[index + 1]
        if not (after == ":" or after in HEX_DIGITS) or text[index - 1] not in HEX_COLON:
            continue
        match = IPV6_RE.search(text, max(previous_end, index - 40), index + 48)
        if match is None or not match.start() <= index < match.end():
            continue
        previous_end = match.end()
        candidate = match.group()
        if sum(1 for group in candidate.split(":") if group) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        scan.add(IP_ADDRESS, *match.span())


def detect_pii(text: str, *, tenant_patterns: Sequence[tuple[str, str]] = ()) -> PrivacyResult:
    """Kinds of personal data and secrets in `text`, with counts (never the values).

    Tenant patterns run over the whole (bounded) text; their cost is theirs.
    """
    scanned, is_truncated = bounded(text)
    scan = _Scan(scanned)
    _scan_secrets(scan)
    _scan_jwts(scan)
    _scan_digit_runs(scan)
    _scan_ibans(scan)
    _scan_keyword_numbers(scan)
    if "@" in scanned:
        _scan_emails(scan)
    _scan_ips(scan)
    for tenant_pattern in compile_tenant_patterns(tenant_patterns):
        tenant_count = sum(1 for _ in tenant_pattern.pattern.finditer(scanned))
        if tenant_count:
            scan.counts[TENANT_KIND_PREFIX + tenant_pattern.name] = tenant_count
    return PrivacyResult(counts=tuple(sorted(scan.counts.items())), is_truncated=is_truncated)
