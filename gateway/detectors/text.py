"""Request text for the detectors: what the model will read, as (role, text) segments.

Pure and allocation-light. Image, audio and other non-text parts are ignored; a legacy
`prompt` (string or list of strings) becomes user segments. Token-id prompts carry no text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Segment = tuple[str, str]

# Detectors look at no more than this many characters (~16k tokens). Beyond it they scan the
# head and the tail, where instructions and pasted secrets usually sit, and say they truncated.
MAX_SCAN_CHARS = 65_536


def extract_text(messages: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """The text of OpenAI chat messages as (role, text), one entry per text part."""
    segments: list[Segment] = []
    for message in messages:
        # Parsed JSON is plain dicts: dict first, as the Mapping check alone goes through the
        # ABC machinery (~0.2 us a call, once per message and per content part).
        if not isinstance(message, (dict, Mapping)):
            continue
        role = message.get("role")
        role = role if isinstance(role, str) else "user"
        content = message.get("content")
        if isinstance(content, str):
            if content:
                segments.append((role, content))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, (dict, Mapping)) and part.get("type") == "text":
                    text = part.get("text")
                    if isinstance(text, str) and text:
                        segments.append((role, text))
    return segments


def extract_prompt_text(prompt: object) -> list[Segment]:
    """The text of a legacy completions `prompt` as user segments."""
    if isinstance(prompt, str):
        return [("user", prompt)] if prompt else []
    if isinstance(prompt, list):
        return [("user", item) for item in prompt if isinstance(item, str) and item]
    return []


def extract_request_text(body: Mapping[str, Any]) -> list[Segment]:
    """Segments of a chat (`messages`) or completions (`prompt`) request body."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return extract_text(messages)
    return extract_prompt_text(body.get("prompt"))


def join_segments(segments: Sequence[Segment], roles: Iterable[str] | None = None) -> str:
    """The segments' text joined by blank lines, optionally only those of the given roles."""
    if roles is None:
        return "\n\n".join(text for _, text in segments)
    wanted = frozenset(roles)
    return "\n\n".join(text for role, text in segments if role in wanted)


def bounded(text: str, limit: int = MAX_SCAN_CHARS) -> tuple[str, bool]:
    """The text to scan (head and tail when over `limit`) and whether it was cut."""
    if len(text) <= limit:
        return text, False
    half = limit // 2
    return text[:half] + "\n" + text[-half:], True


def ascii_view(text: str) -> str:
    """`text` with every non-ASCII character replaced by '?': same length, same indices.

    Anchor searches run on this view so that str.lower() (which can change the length of some
    non-ASCII strings) never shifts positions relative to the original text.
    """
    if text.isascii():
        return text
    return text.encode("ascii", "replace").decode("ascii")


def find_all(haystack: str, needle: str) -> list[int]:
    """Start offsets of every (non-overlapping) occurrence of `needle`, found at C speed."""
    positions: list[int] = []
    index = haystack.find(needle)
    while index != -1:
        positions.append(index)
        index = haystack.find(needle, index + len(needle))
    return positions
