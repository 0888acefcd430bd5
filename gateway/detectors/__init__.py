"""Request detectors for the smart router: privacy, complexity, injection.

Pure functions, no I/O, safe to call on the hot path (together well under 1 ms for a
4,000-token conversation; see bench/evaluate_detectors.py). Results are frozen dataclasses that
name kinds and signals, never the matched text, so they are safe to log.

    segments = extract_request_text(body)          # [(role, text), ...]
    text = join_segments(segments)
    detect_pii(text, tenant_patterns=[("employee_id", r"EMP-\\d{6}")])
    score_complexity(segments)
    detect_injection(join_segments(segments, roles=("user", "tool")))
"""

from gateway.detectors.complexity import ComplexityResult, score_complexity
from gateway.detectors.injection import InjectionResult, detect_injection
from gateway.detectors.privacy import PrivacyResult, compile_tenant_patterns, detect_pii
from gateway.detectors.text import (
    Segment,
    extract_prompt_text,
    extract_request_text,
    extract_text,
    join_segments,
)

__all__ = [
    "ComplexityResult",
    "InjectionResult",
    "PrivacyResult",
    "Segment",
    "compile_tenant_patterns",
    "detect_injection",
    "detect_pii",
    "extract_prompt_text",
    "extract_request_text",
    "extract_text",
    "join_segments",
    "score_complexity",
]
