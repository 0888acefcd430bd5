"""Policy -> model: the routing decision as pure functions of a policy and a request.

No I/O, no clock. `assess(policy, payload)` runs the detectors as the policy configures them;
`decide(policy, signals)` turns what they found (`Signals`) into a `Decision` (serve a model or
block, with a short stable reason code). gateway.routing applies the decision to the request.

Order (policy/default.yaml documents it for operators):
1. guards that block: injection verdict with action `block`, a privacy `block_kinds` match;
2. privacy `kinds` match -> `privacy.route_to`                       reason `privacy.local`;
3. injection verdict with action `route` -> `injection.safe_model`    `injection.safe_model`;
4. routing rules in order, first match wins (serve / block / allow)   `rule.<name>`;
5. the routing default (serve / block / allow)                        `default.<type>`;
6. allow: `auto` -> the complexity tier's model                       `complexity.<tier>`,
   an explicit model as requested                                   `requested`.
Injection action `flag` adds the flag `injection.<verdict>` to whatever is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.detectors import (
    ComplexityResult,
    InjectionResult,
    PrivacyResult,
    detect_injection,
    detect_pii,
    extract_request_text,
    join_segments,
    score_complexity,
)
from gateway.detectors.privacy_patterns import TENANT_KIND_PREFIX
from gateway.policy_schema import ANY_TENANT_KIND, AUTO, Action, Conditions, Policy

REQUESTED = "requested"
PRIVACY_LOCAL = "privacy.local"
PRIVACY_BLOCK = "privacy.block"
INJECTION_BLOCK = "injection.block"
INJECTION_SAFE_MODEL = "injection.safe_model"
CLEAN = "clean"


@dataclass(frozen=True, slots=True)
class Signals:
    """What the router decides on. Kinds and verdicts only, never request text."""

    requested_model: str
    pii_kinds: frozenset[str] = frozenset()
    complexity_tier: str = "simple"
    injection_verdict: str = CLEAN
    tenant_slug: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The three detectors' results for one request body."""

    privacy: PrivacyResult
    complexity: ComplexityResult
    injection: InjectionResult

    def signals(
        self,
        requested_model: str,
        *,
        tenant_slug: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Signals:
        return Signals(
            requested_model=requested_model,
            pii_kinds=self.privacy.kinds,
            complexity_tier=self.complexity.tier,
            injection_verdict=self.injection.verdict,
            tenant_slug=tenant_slug,
            headers=headers or {},
        )


def assess(policy: Policy, body: Mapping[str, Any]) -> Assessment:
    """Run the detectors on a chat or completions body with the policy's settings."""
    segments = extract_request_text(body)
    privacy = detect_pii(
        join_segments(segments), tenant_patterns=tuple(policy.privacy.patterns.items())
    )
    complexity = score_complexity(
        segments,
        medium_threshold=policy.complexity.medium_threshold,
        complex_threshold=policy.complexity.complex_threshold,
    )
    injection = detect_injection(join_segments(segments, roles=policy.injection.scan_roles))
    return Assessment(privacy=privacy, complexity=complexity, injection=injection)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["serve", "block"]
    model: str | None  # the model to serve; None when blocked
    reason: str
    flags: tuple[str, ...] = ()

    @property
    def is_blocked(self) -> bool:
        return self.action == "block"


def kinds_match(found: frozenset[str], wanted: frozenset[str]) -> bool:
    """Whether any found kind is wanted; `tenant:*` wants every tenant pattern's kind."""
    if not found:
        return False
    if not found.isdisjoint(wanted):
        return True
    return ANY_TENANT_KIND in wanted and any(k.startswith(TENANT_KIND_PREFIX) for k in found)


def conditions_hold(when: Conditions, signals: Signals) -> bool:
    if when.pii_kinds_any is not None and not kinds_match(signals.pii_kinds, when.pii_kinds_any):
        return False
    if when.complexity_tier is not None and signals.complexity_tier not in when.complexity_tier:
        return False
    if (
        when.injection_verdict is not None
        and signals.injection_verdict not in when.injection_verdict
    ):
        return False
    if when.tenant is not None and signals.tenant_slug not in when.tenant:
        return False
    if when.requested_model is not None and signals.requested_model not in when.requested_model:
        return False
    if when.header is not None:
        return all(signals.headers.get(name) == value for name, value in when.header.items())
    return True


def decide(policy: Policy, signals: Signals) -> Decision:
    flags: tuple[str, ...] = ()
    injection_action = _injection_action(policy, signals.injection_verdict)
    if injection_action == "block":
        return Decision("block", None, INJECTION_BLOCK)
    if injection_action == "flag":
        flags = (f"injection.{signals.injection_verdict}",)
    privacy = policy.privacy
    if privacy.enabled and kinds_match(signals.pii_kinds, privacy.block_kinds):
        return Decision("block", None, PRIVACY_BLOCK, flags)
    if privacy.enabled and privacy.route_to and kinds_match(signals.pii_kinds, privacy.kinds):
        return Decision("serve", privacy.route_to, PRIVACY_LOCAL, flags)
    if injection_action == "route" and policy.injection.safe_model:
        return Decision("serve", policy.injection.safe_model, INJECTION_SAFE_MODEL, flags)
    for rule in policy.routing.rules:
        if conditions_hold(rule.when, signals):
            return _act(policy, signals, rule.action, f"rule.{rule.name}", flags)
    return _act(policy, signals, policy.routing.default, None, flags)


def _injection_action(policy: Policy, verdict: str) -> str | None:
    if not policy.injection.enabled or verdict == CLEAN:
        return None
    if verdict == "injection":
        return policy.injection.on_injection
    return policy.injection.on_suspicious


def _act(
    policy: Policy, signals: Signals, action: Action, reason: str | None, flags: tuple[str, ...]
) -> Decision:
    if action.type == "block":
        return Decision("block", None, reason or "default.block", flags)
    if action.type == "serve":
        return Decision("serve", action.model, reason or "default.serve", flags)
    if signals.requested_model == AUTO:
        tier = signals.complexity_tier
        model = getattr(policy.complexity.tiers, tier)
        return Decision("serve", model, reason or f"complexity.{tier}", flags)
    return Decision("serve", signals.requested_model, reason or REQUESTED, flags)
