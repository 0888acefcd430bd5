"""The routing policy's schema: pydantic models with unknown keys refused everywhere.

`Policy` is a whole policy file; `PolicyOverride` is a tenant's partial policy, every field
optional. Loading, validation of route targets and layering live in gateway.policy.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.detectors.privacy import compile_tenant_patterns
from gateway.detectors.privacy_patterns import BUILTIN_KINDS, TENANT_KIND_PREFIX

AUTO = "auto"
ANY_TENANT_KIND = TENANT_KIND_PREFIX + "*"
Tier = Literal["simple", "medium", "complex"]
Verdict = Literal["clean", "suspicious", "injection"]
InjectionAction = Literal["block", "flag", "route", "allow"]
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
_RULE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_TENANT_KIND_RE = re.compile(r"^tenant:(?:\*|[A-Za-z0-9_.-]{1,64})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_kinds(kinds: frozenset[str]) -> frozenset[str]:
    for kind in kinds:
        if kind not in BUILTIN_KINDS and not _TENANT_KIND_RE.match(kind):
            known = ", ".join(sorted(BUILTIN_KINDS))
            raise ValueError(f"unknown kind {kind!r}; use one of {known}, 'tenant:<name>' or "
                             f"'{ANY_TENANT_KIND}'")  # fmt: skip
    return kinds


def _check_patterns(patterns: dict[str, str]) -> dict[str, str]:
    compile_tenant_patterns(patterns.items())  # ValueError names the bad pattern
    return patterns


class PrivacySection(_Strict):
    enabled: bool = True
    kinds: frozenset[str] = BUILTIN_KINDS | {ANY_TENANT_KIND}
    route_to: ModelName | None = None
    block_kinds: frozenset[str] = frozenset()
    patterns: dict[str, str] = {}

    check_kinds = field_validator("kinds", "block_kinds")(_check_kinds)
    check_patterns = field_validator("patterns")(_check_patterns)

    @model_validator(mode="after")
    def _needs_a_target(self) -> PrivacySection:
        if self.enabled and self.kinds and self.route_to is None:
            raise ValueError("route_to is required when privacy is enabled with kinds")
        return self


class Tiers(_Strict):
    simple: ModelName
    medium: ModelName
    complex: ModelName


class ComplexitySection(_Strict):
    medium_threshold: float = Field(0.35, ge=0.0, le=1.0)
    complex_threshold: float = Field(0.7, ge=0.0, le=1.0)
    tiers: Tiers

    @model_validator(mode="after")
    def _ordered(self) -> ComplexitySection:
        if self.medium_threshold > self.complex_threshold:
            raise ValueError("medium_threshold must not exceed complex_threshold")
        return self


class InjectionSection(_Strict):
    enabled: bool = True
    scan_roles: frozenset[str] = frozenset({"user", "tool"})
    on_injection: InjectionAction = "block"
    on_suspicious: InjectionAction = "flag"
    safe_model: ModelName | None = None

    @model_validator(mode="after")
    def _safe_model_for_route(self) -> InjectionSection:
        if "route" in (self.on_injection, self.on_suspicious) and self.safe_model is None:
            raise ValueError("safe_model is required when an action is 'route'")
        return self


class Action(_Strict):
    type: Literal["serve", "block", "allow"]
    model: ModelName | None = None

    @model_validator(mode="after")
    def _model_only_for_serve(self) -> Action:
        if self.type == "serve" and self.model is None:
            raise ValueError("model is required for type 'serve'")
        if self.type != "serve" and self.model is not None:
            raise ValueError(f"model is only allowed for type 'serve', not {self.type!r}")
        return self


class Conditions(_Strict):
    """All given conditions must hold (AND); a list matches when any of its items does."""

    pii_kinds_any: frozenset[str] | None = None
    complexity_tier: frozenset[Tier] | None = None
    injection_verdict: frozenset[Verdict] | None = None
    tenant: frozenset[str] | None = None
    requested_model: frozenset[str] | None = None
    header: dict[str, str] | None = None

    @field_validator("pii_kinds_any")
    @classmethod
    def _kinds(cls, kinds: frozenset[str] | None) -> frozenset[str] | None:
        return None if kinds is None else _check_kinds(kinds)

    @field_validator("header")
    @classmethod
    def _header_names(cls, header: dict[str, str] | None) -> dict[str, str] | None:
        # ASGI servers hand header names over lower-cased.
        return None if header is None else {name.lower(): value for name, value in header.items()}


class Rule(_Strict):
    name: str
    when: Conditions = Conditions()
    action: Action

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _RULE_NAME_RE.match(name):
            raise ValueError("name must be 1-40 of [a-z0-9_.-], starting with a letter or digit")
        return name


class RoutingSection(_Strict):
    rules: tuple[Rule, ...] = ()
    default: Action = Action(type="allow")

    @model_validator(mode="after")
    def _unique_names(self) -> RoutingSection:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self


class Policy(_Strict):
    models: frozenset[ModelName] = frozenset()
    privacy: PrivacySection = PrivacySection(enabled=False)
    complexity: ComplexitySection
    injection: InjectionSection = InjectionSection()
    routing: RoutingSection = RoutingSection()

    @field_validator("models")
    @classmethod
    def _no_auto(cls, models: frozenset[str]) -> frozenset[str]:
        if AUTO in models:
            raise ValueError(f"{AUTO!r} is reserved for 'let the router choose'")
        return models


# --- tenant overrides: the same sections, every field optional --------------------------------


class PrivacyOverride(_Strict):
    enabled: bool | None = None
    kinds: frozenset[str] | None = None
    route_to: ModelName | None = None
    block_kinds: frozenset[str] | None = None
    patterns: dict[str, str] | None = None  # added to the policy's patterns

    check_kinds = field_validator("kinds", "block_kinds")(
        lambda kinds: None if kinds is None else _check_kinds(kinds)
    )
    check_patterns = field_validator("patterns")(
        lambda patterns: None if patterns is None else _check_patterns(patterns)
    )


class TiersOverride(_Strict):
    simple: ModelName | None = None
    medium: ModelName | None = None
    complex: ModelName | None = None


class ComplexityOverride(_Strict):
    medium_threshold: float | None = Field(None, ge=0.0, le=1.0)
    complex_threshold: float | None = Field(None, ge=0.0, le=1.0)
    tiers: TiersOverride | None = None


class InjectionOverride(_Strict):
    enabled: bool | None = None
    scan_roles: frozenset[str] | None = None
    on_injection: InjectionAction | None = None
    on_suspicious: InjectionAction | None = None
    safe_model: ModelName | None = None


class RoutingOverride(_Strict):
    rules: tuple[Rule, ...] = ()  # evaluated before the policy's rules
    default: Action | None = None


class PolicyOverride(_Strict):
    privacy: PrivacyOverride = PrivacyOverride()
    complexity: ComplexityOverride = ComplexityOverride()
    injection: InjectionOverride = InjectionOverride()
    routing: RoutingOverride = RoutingOverride()
