"""Prompt-injection detector: verdict (clean / suspicious / injection), score and signal names.

Pure, no I/O; the result never carries matched text. Signals:
- phrases (see injection_patterns): instruction override, system-prompt exfiltration, role-play
  jailbreaks, fake system tags, refusal suppression;
- encoded payloads: base64 and hex blobs are decoded (bounded in number and size) and the
  decoded text is scanned for the same phrases;
- invisible characters: Unicode tag characters (decoded and scanned too), zero-width
  characters in suspicious density or long runs, bidi overrides.

Writing ABOUT injection must not trip it. A phrase that follows an example marker ("such as",
"the phrase"), or that has a third-person subject earlier in its sentence ("attackers tell the
model to ..."), counts for a fraction of its weight, and less again when the whole text reads
as discussion (several words of security writing). Encoded and invisible signals get no such
discount: nobody discusses an attack by hiding it.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from gateway.detectors.injection_patterns import (
    DISCUSSION_RE,
    EXAMPLE_BEFORE_RE,
    PHRASE_SIGNALS,
    THIRD_PERSON_BEFORE_RE,
)
from gateway.detectors.text import ascii_view, bounded, find_all

CLEAN = "clean"
SUSPICIOUS = "suspicious"
INJECTION = "injection"
SUSPICIOUS_THRESHOLD = 0.3
INJECTION_THRESHOLD = 0.6

_EXAMPLE_FACTOR = 0.35
_THIRD_PERSON_FACTOR = 0.35
_DISCUSSION_FACTOR = 0.6
_ENCODED_WEIGHT = 0.9
_TAG_CHARACTERS_WEIGHT = 0.5
_TAG_INSTRUCTION_WEIGHT = 0.9
_ZERO_WIDTH_DENSITY_WEIGHT = 0.4
_ZERO_WIDTH_RUN_WEIGHT = 0.6
_BIDI_WEIGHT = 0.35

# Decoding is the only super-linear risk; these bound it whatever the input.
_MAX_BLOBS = 8
_MAX_BLOB_CHARS = 8_192
_MAX_WINDOWS = 64

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"
_STRIP_INVISIBLE = {ord(char): None for char in _ZERO_WIDTH}
_FOLD_QUOTES = str.maketrans("“”‘’«»", '""\'\'""')
_TAG_RE = re.compile("[\U000e0000-\U000e007f]")
# A black flag followed by tag letters and a cancel tag is a subdivision flag emoji (England).
_FLAG_SEQUENCE_RE = re.compile("\U0001f3f4[\U000e0020-\U000e007e]{1,12}\U000e007f")
_ZERO_WIDTH_RUN_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]{8,}")
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Blob shape: the base64 alphabet (and "\\" of "\\x41" escapes) becomes "b"; hex pairs
# separated by spaces or colons are found as "hh hh ..." on a second mapping.
_BLOB_SHAPE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-\\",
    b"b" * 68,
)
_BLOB_RUN = b"b" * 24
_NOT_BLOB = re.compile(rb"[^b]")
_SPACED_HEX = b"bb bb bb bb bb bb"
_SPACED_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2}[ :,]){11,}[0-9A-Fa-f]{2}(?![0-9A-Fa-f])")
_NOT_HEX_RE = re.compile(r"[^0-9A-Fa-f]")
_SENTENCE_END_RE = re.compile(r"[.!?\n][^.!?\n]*$")
# Literal cores of DISCUSSION_RE's alternatives, to find them without scanning the whole text.
_DISCUSSION_MARKERS = (
    "injection",
    "jailbreak",
    "attack",
    "adversar",
    "red team",
    "red-team",
    "mitigat",
    "defen",
    "vulnerab",
    "owasp",
    "researcher",
    "threat model",
    "security",
    "classifier",
    "detect",
    "filter",
    "guardrail",
    "case stud",
    "example",
    "paper",
    "article",
)


# Each distinct marker once, in the order the signals name them.
_MARKERS = tuple(dict.fromkeys(marker for signal in PHRASE_SIGNALS for marker in signal.markers))


@dataclass(frozen=True, slots=True)
class InjectionResult:
    """Verdict, score in [0, 1) and the names of the signals that fired (never the text)."""

    verdict: str
    score: float
    signals: tuple[str, ...]

    @property
    def is_injection(self) -> bool:
        return self.verdict == INJECTION


def _discounted(weight: float, lowered: str, start: int, *, is_discussion: bool) -> float:
    """`weight` reduced when the phrase at `start` is an example or a third-person report."""
    before = lowered[max(0, start - 120) : start]
    if EXAMPLE_BEFORE_RE.search(before, max(0, len(before) - 40)):
        weight *= _EXAMPLE_FACTOR
    sentence_end = _SENTENCE_END_RE.search(before)
    sentence = before[sentence_end.end() :] if sentence_end else before
    if THIRD_PERSON_BEFORE_RE.search(sentence):
        weight *= _THIRD_PERSON_FACTOR
    if is_discussion:
        weight *= _DISCUSSION_FACTOR
    return weight


def _marker_positions(lowered: str) -> dict[str, list[int]]:
    """The first _MAX_WINDOWS offsets of each phrase marker that occurs in `lowered`.

    Bounded work: a text repeating a marker thousands of times gets its first _MAX_WINDOWS
    occurrences checked (and the tail, as `bounded` keeps it).
    """
    positions: dict[str, list[int]] = {}
    for marker in _MARKERS:
        index = lowered.find(marker)
        if index == -1:
            continue
        found = []
        while index != -1 and len(found) < _MAX_WINDOWS:
            found.append(index)
            index = lowered.find(marker, index + len(marker))
        positions[marker] = found
    return positions


def _phrase_weights(
    lowered: str,
    *,
    is_discussion: bool,
    is_decoded: bool,
    positions: dict[str, list[int]] | None = None,
) -> dict[str, float]:
    """Strongest weight of each phrase signal in lower-cased text, discounted by context.

    Decoded and hidden text gets no discount: nobody quotes an attack by encoding it.
    `positions` is `_marker_positions(lowered)` when the caller already has it.
    """
    if positions is None:
        positions = _marker_positions(lowered)
    weights: dict[str, float] = {}
    if not positions:
        return weights
    for signal in PHRASE_SIGNALS:
        before, after = signal.window
        for marker in signal.markers:
            found = positions.get(marker)
            if found is None:
                continue
            searched_to = 0
            for index in found:
                if index < searched_to:
                    continue
                window_start = max(searched_to, index - before)
                searched_to = index + len(marker) + after
                # The gate (one C-level search, rarely passed) before the literals' Python loop.
                if (
                    signal.gate is not None
                    and signal.gate.search(lowered, window_start, searched_to) is None
                ):
                    continue
                if signal.requires and not any(
                    lowered.find(word, window_start, searched_to) != -1 for word in signal.requires
                ):
                    continue
                match = signal.pattern.search(lowered, window_start, searched_to)
                if match is None:
                    continue
                weight = signal.weight
                if not is_decoded:
                    weight = _discounted(
                        weight, lowered, match.start(), is_discussion=is_discussion
                    )
                if weight > weights.get(signal.name, 0.0):
                    weights[signal.name] = weight
    return weights


def _as_text(raw: bytes) -> str | None:
    """Decoded bytes as text when they are mostly printable, else None."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for char in decoded if char.isprintable() or char in "\n\t")
    return decoded.lower() if decoded and printable >= 0.9 * len(decoded) else None


def _blob_spans(text: str) -> list[tuple[int, int]]:
    """Spans of base64/hex-looking runs (24+ characters), found on a byte shape of `text`."""
    shape = ascii_view(text).encode("ascii").translate(_BLOB_SHAPE)
    spans: list[tuple[int, int]] = []
    index = shape.find(_BLOB_RUN)
    while index != -1 and len(spans) < _MAX_BLOBS:
        end_match = _NOT_BLOB.search(shape, index)
        end = end_match.start() if end_match else len(shape)
        spans.append((index, min(end, index + _MAX_BLOB_CHARS)))
        index = shape.find(_BLOB_RUN, end)
    index = shape.find(_SPACED_HEX)
    while index != -1 and len(spans) < _MAX_BLOBS:
        match = _SPACED_HEX_RE.match(text, index)
        end = match.end() if match else index + len(_SPACED_HEX)
        if match:
            spans.append((index, min(end, index + _MAX_BLOB_CHARS)))
        index = shape.find(_SPACED_HEX, end)
    return spans


def _decode_blob(blob: str) -> bytes | None:
    hex_digits = _NOT_HEX_RE.sub("", blob.replace("\\x", ""))
    try:
        if "\\x" in blob or " " in blob or ":" in blob or len(hex_digits) == len(blob):
            return bytes.fromhex(hex_digits) if len(hex_digits) % 2 == 0 else None
        compact = blob.rstrip("=").replace("-", "+").replace("_", "/")
        return binascii.a2b_base64(compact + "=" * (-len(compact) % 4))
    except (binascii.Error, ValueError):
        return None


def _decoded_blobs(text: str) -> list[str]:
    """Texts hidden in base64 or hex blobs of `text`, at most _MAX_BLOBS of them."""
    found: list[str] = []
    for start, end in _blob_spans(text):
        raw = _decode_blob(text[start:end])
        decoded = _as_text(raw) if raw else None
        if decoded is not None:
            found.append(decoded)
    return found


def _invisible_weights(text: str, weights: dict[str, float]) -> str:
    """Add invisible-character signals; return the text with invisibles removed."""
    if _TAG_RE.search(text):
        hidden = "".join(
            chr(ord(char) - 0xE0000) for char in _TAG_RE.findall(_FLAG_SEQUENCE_RE.sub("", text))
        )
        if hidden:
            weights["tag_characters"] = _TAG_CHARACTERS_WEIGHT
            hidden_weights = _phrase_weights(hidden.lower(), is_discussion=False, is_decoded=True)
            if hidden_weights:
                weights["tag_smuggled_instruction"] = _TAG_INSTRUCTION_WEIGHT
        text = _TAG_RE.sub("", text)
    zero_width = sum(text.count(char) for char in _ZERO_WIDTH[:5])
    if zero_width:
        # A few zero-width characters come with copy-pasted web text; many per kilobyte or a
        # long run (binary-encoded smuggling) do not.
        if zero_width >= 4 and zero_width * 1000 >= 2 * len(text):
            weights["zero_width_density"] = _ZERO_WIDTH_DENSITY_WEIGHT
        if _ZERO_WIDTH_RUN_RE.search(text):
            weights["zero_width_run"] = _ZERO_WIDTH_RUN_WEIGHT
        text = text.translate(_STRIP_INVISIBLE)
    if _BIDI_RE.search(text):
        weights["bidi_override"] = _BIDI_WEIGHT
    return text


def _is_discussion(lowered: str) -> bool:
    """Whether the text reads as writing about attacks (two distinct security words)."""
    seen: set[str] = set()
    for marker in _DISCUSSION_MARKERS:
        for index in find_all(lowered, marker):
            match = DISCUSSION_RE.search(lowered, max(0, index - 10), index + 40)
            if match is not None:
                seen.add(match.group())
                break
        if len(seen) >= 2:
            return True
    return False


def detect_injection(text: str) -> InjectionResult:
    """Judge whether `text` tries to override, exfiltrate or jailbreak the model."""
    scanned, _ = bounded(text)
    weights: dict[str, float] = {}
    if not scanned.isascii():
        scanned = _invisible_weights(scanned, weights).translate(_FOLD_QUOTES)
    lowered = ascii_view(scanned).lower()
    positions = _marker_positions(lowered)
    phrase_weights = _phrase_weights(
        lowered, is_discussion=False, is_decoded=False, positions=positions
    )
    if phrase_weights and _is_discussion(lowered):
        phrase_weights = _phrase_weights(
            lowered, is_discussion=True, is_decoded=False, positions=positions
        )
    weights.update(phrase_weights)
    for decoded in _decoded_blobs(scanned):
        if _phrase_weights(decoded, is_discussion=False, is_decoded=True):
            weights["encoded_instruction"] = _ENCODED_WEIGHT
            break
    remaining = 1.0
    for weight in weights.values():
        remaining *= 1.0 - weight
    score = round(1.0 - remaining, 3)
    if score >= INJECTION_THRESHOLD:
        verdict = INJECTION
    elif score >= SUSPICIOUS_THRESHOLD:
        verdict = SUSPICIOUS
    else:
        verdict = CLEAN
    signals = tuple(sorted(weights))
    return InjectionResult(verdict=verdict, score=score, signals=signals)
