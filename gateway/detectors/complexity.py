"""Complexity detector: a score in [0, 1] and a tier (simple / medium / complex) for routing.

Pure, no I/O. The score is a capped sum of named feature contributions, each itself capped, so
one feature alone cannot make a request complex except reasoning requests ("prove",
"analyze the trade-offs"), which are the strongest single sign. Length counts little on
purpose: a long paste to translate or reformat is still a simple job.

What the request asks is read from the last user turn (earlier turns are context and count as
depth); code, length and math are read from the whole conversation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.detectors.text import Segment, bounded

SIMPLE = "simple"
MEDIUM = "medium"
COMPLEX = "complex"
DEFAULT_MEDIUM_THRESHOLD = 0.35
DEFAULT_COMPLEX_THRESHOLD = 0.7

# The ask is read as a set of words (single C-speed split) plus substring checks for phrases;
# alternation-heavy regexes over the text cost ~0.4 us a character in Python's engine.
_ASK_CHARS = 4_000


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD_SPLIT = str.maketrans({char: " " for char in '!"#$%&()*+,./:;<=>?@[\\]^`{|}~'})
_REASONING_STRONG_WORDS = _words(
    """
    prove proof proofs derive derivation analyze analyse analysis rigorous rigorously
    formally tradeoff tradeoffs trade-off trade-offs architecture architect evaluate
    critique justify optimize optimise optimization counterexample invariant invariants
    scalability scalable concurrency concurrent deadlock distributed bottleneck
    bottlenecks asymptotic
    """
)
_REASONING_STRONG_PHRASES = (
    "step by step",
    "step-by-step",
    "edge case",
    "root cause",
    "time complexity",
    "space complexity",
    "big-o",
    "design a ",
    "design an ",
    "design the ",
    "threat model",
    "migration plan",
    "race condition",
    "failure mode",
    "consistency model",
    "think through",
)
_REASONING_LIGHT_WORDS = _words(
    """
    explain compare contrast why summarize summarise outline assess recommend plan
    strategy implications review pros cons difference
    """
)
# Asking for a piece of work to be produced (not looked up, translated or reformatted).
_TASK_WORDS = _words(
    """
    write draft explain summarize summarise compare plan convert create generate build
    describe outline review recommend implement refactor
    """
)
_CODE_TASK_WORDS = _words(
    """
    implement refactor debug function script class program query regex parser module
    unittest pytest traceback stacktrace compile compiler segfault sql api endpoint bug
    """
)
_MATH_WORDS = _words(
    """
    integral derivative eigenvalue eigenvalues eigenvector matrix matrices theorem lemma
    polynomial probability equation equations modulo prime primes logarithm differential
    convergence converges induction bayes bayesian variance combinatorics inequality
    irrational integer integers divisible gcd factorial series
    """
)
_MATH_SYMBOLS = "∫∑∏√∞≤≥≠±∂∇≈∀∃∈≡"
_LATEX_RE = re.compile(r"\\(?:frac|int|sum|sqrt|lim|prod|partial|nabla|infty|mathbb|begin|cdot)")
_EQUATION_RE = re.compile(r"[a-z0-9)]\s*(?:\^|\*\*)\s*[\d(a-z{]|\b\d*[a-z]\s*[+*/-]\s*\d+\s*=")
_SEQUENCE_WORDS = _words(
    """
    first firstly then next afterwards finally lastly second secondly third thirdly
    """
)
_CONSTRAINT_WORDS = _words(
    """
    must without only exactly never always avoid
    """
)
_CONSTRAINT_PHRASES = ("at most", "at least", "no more than", "in-place", "o(", "thread-safe")
# Counted in this order (indentation, the most common, first) until _CODE_LINES_ENOUGH.
_CODE_LINE_MARKERS = ("\n    ", "\n\t", ";\n", "{\n", "\ndef ", "\nclass ", "\nimport ")
_CODE_LINES_ENOUGH = 15


@dataclass(frozen=True, slots=True)
class ComplexityResult:
    """Score, tier and each feature's contribution to the score (for explainability)."""

    score: float
    tier: str
    features: tuple[tuple[str, float], ...]

    def feature(self, name: str) -> float:
        return next((value for found, value in self.features if found == name), 0.0)


def _numbered_items(ask: str) -> int:
    """Lines that start like "1." / "2)" / "- " list items."""
    items = sum(1 for number in range(1, 7) if f"\n{number}." in ask or f"\n{number})" in ask)
    if ask.startswith(("1.", "1)")):
        items += 1
    return items + min(3, ask.count("\n- "))


def _code_lines_up_to(conversation: str, enough: int) -> int:
    """Lines that look like code, counted until `enough` (each count is a pass over the text)."""
    found = 0
    for marker in _CODE_LINE_MARKERS:
        found += conversation.count(marker)
        if found >= enough:
            break
    return found


def _features(segments: Sequence[Segment]) -> dict[str, float]:
    conversation, _ = bounded("\n\n".join(text for role, text in segments if role != "system"))
    total_chars = sum(len(text) for _, text in segments)
    ask = next((text for role, text in reversed(segments) if role == "user"), conversation)
    if len(ask) > _ASK_CHARS:
        # What is asked sits at the start or the end of a long paste.
        ask = ask[: _ASK_CHARS // 2] + "\n" + ask[-_ASK_CHARS // 2 :]
    ask_lower = ask.lower()
    words = frozenset(ask_lower.translate(_WORD_SPLIT).split())
    turns = sum(1 for role, _ in segments if role in ("user", "assistant"))

    strong = len(words & _REASONING_STRONG_WORDS)
    strong += sum(1 for phrase in _REASONING_STRONG_PHRASES if phrase in ask_lower)
    light = min(2, len(words & _REASONING_LIGHT_WORDS) + ("how does" in ask_lower))
    reasoning = (0.55 + 0.15 * (min(strong, 3) - 1) if strong else 0.0) + 0.1 * light
    task = 0.35 if words & _TASK_WORDS else 0.0

    first_fence = conversation.find("```")
    has_fences = first_fence != -1 and conversation.find("```", first_fence + 3) != -1
    code_lines = _code_lines_up_to(conversation, _CODE_LINES_ENOUGH)
    code = (0.15 if has_fences else 0.0) + (0.1 if code_lines >= 3 else 0.0)
    code += 0.1 if code_lines >= _CODE_LINES_ENOUGH else 0.0
    code += 0.2 if words & _CODE_TASK_WORDS else 0.0

    math_hits = len(words & _MATH_WORDS)
    if not ask.isascii() and any(symbol in ask for symbol in _MATH_SYMBOLS):
        math_hits += 1
    if "\\" in ask and _LATEX_RE.search(ask):
        math_hits += 1
    if ("^" in ask or "=" in ask or "**" in ask) and _EQUATION_RE.search(ask_lower):
        math_hits += 1

    items = _numbered_items(ask)
    steps = len(words & _SEQUENCE_WORDS) + ("after that" in ask_lower)
    multi_step = (0.1 if items >= 2 else 0.0) + (0.1 if items >= 4 else 0.0)
    multi_step += (0.1 if steps >= 2 else 0.0) + (0.05 if steps >= 3 else 0.0)

    constraints = len(words & _CONSTRAINT_WORDS)
    constraints += sum(1 for phrase in _CONSTRAINT_PHRASES if phrase in ask_lower)

    approx_tokens = total_chars / 4
    length = 0.0
    if approx_tokens > 200:
        length = 0.15 * min(1.0, math.log(approx_tokens / 200) / math.log(20))
    return {
        "reasoning": round(min(0.85, reasoning), 3),
        "task": task,
        "code": round(min(0.45, code), 3),
        "math": round(min(0.3, 0.15 * math_hits), 3),
        "multi_step": round(multi_step, 3),
        "constraints": round(min(0.15, 0.05 * constraints), 3),
        "length": round(length, 3),
        "depth": round(min(0.15, 0.03 * max(0, turns - 2)), 3),
    }


def score_complexity(
    segments: Sequence[Segment] | str,
    *,
    medium_threshold: float = DEFAULT_MEDIUM_THRESHOLD,
    complex_threshold: float = DEFAULT_COMPLEX_THRESHOLD,
) -> ComplexityResult:
    """Score and tier a conversation ((role, text) segments) or a single user text."""
    if not 0.0 <= medium_threshold <= complex_threshold <= 1.0:
        raise ValueError("thresholds must satisfy 0 <= medium <= complex <= 1")
    if isinstance(segments, str):
        segments = [("user", segments)]
    features = _features(segments)
    score = round(min(1.0, sum(features.values())), 3)
    if score >= complex_threshold:
        tier = COMPLEX
    elif score >= medium_threshold:
        tier = MEDIUM
    else:
        tier = SIMPLE
    return ComplexityResult(score=score, tier=tier, features=tuple(features.items()))
