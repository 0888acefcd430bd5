"""The routing policy: its schema (pydantic, unknown keys refused), loading and validation.

A policy is a YAML file (settings.AICC_POLICY_PATH, default policy/default.yaml) with the
sections `models`, `privacy`, `complexity`, `injection` and `routing`; policy/default.yaml
documents every field. Loading either returns a `LoadedPolicy` (the policy, a version hash of
the file's bytes, when and from where it was loaded) or raises `PolicyError`, whose message
names each problem by its field path: `routing.rules[2].action.model: unknown model 'gpt-9'`.

Every model a policy routes to must be declared: in the file's own `models` list or in
settings.AICC_KNOWN_MODELS. The upstream is not asked at load time on purpose: start-up and hot
reload must not depend on the upstream being reachable, and a policy must validate the same way
in `manage.py validate_policy` on a laptop as in production.

A tenant override (gateway.models.TenantRoutingOverride) is a partial policy in the same shape:
`parse_override` validates it and `apply_override` layers it on a policy (see there).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.detectors.privacy import BUILTIN_KINDS, TENANT_KIND_PREFIX, compile_tenant_patterns

AUTO = "auto"
ANY_TENANT_KIND = TENANT_KIND_PREFIX + "*"
Tier = Literal["simple", "medium", "complex"]
Verdict = Literal["clean", "suspicious", "injection"]
InjectionAction = Literal["block", "flag", "route", "allow"]
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
_RULE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_TENANT_KIND_RE = re.compile(r"^tenant:(?:\*|[A-Za-z0-9_.-]{1,64})$")


class PolicyError(ValueError):
    """An invalid policy or override; `problems` are `field.path: what is wrong` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid routing policy {source}: " + "; ".join(problems))


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


# --- loading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    version: str  # the first 16 hex digits of the file's SHA-256
    loaded_at: datetime
    path: Path
    known_models: frozenset[str]  # the file's `models` plus settings.AICC_KNOWN_MODELS

    def snapshot(self) -> dict[str, str]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at.isoformat(),
            "path": str(self.path),
        }


def default_policy_path() -> Path:
    return Path(
        getattr(settings, "AICC_POLICY_PATH", settings.BASE_DIR / "policy" / "default.yaml")
    )


def configured_known_models() -> frozenset[str]:
    configured = getattr(settings, "AICC_KNOWN_MODELS", ())
    if isinstance(configured, str):
        configured = configured.split(",")
    return frozenset(name.strip() for name in configured if name.strip())


def load_policy(path: Path, *, extra_known_models: Iterable[str] | None = None) -> LoadedPolicy:
    """Read, validate and hash the policy file at `path`; PolicyError if anything is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [f"(file): cannot read: {exc.strerror or exc}"]) from exc
    extra = (
        configured_known_models() if extra_known_models is None else frozenset(extra_known_models)
    )
    policy = parse_policy(raw, source=str(path), extra_known_models=extra)
    return LoadedPolicy(
        policy=policy,
        version=hashlib.sha256(raw).hexdigest()[:16],
        loaded_at=datetime.now(UTC),
        path=path,
        known_models=policy.models | extra,
    )


def parse_policy(
    text: str | bytes, *, source: str = "<policy>", extra_known_models: Iterable[str] = ()
) -> Policy:
    document = _yaml_mapping(text, source)
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, _problems(exc)) from None
    known = policy.models | frozenset(extra_known_models)
    unknown = [
        f"{path}: unknown model {model!r} (declare it in `models` or AICC_KNOWN_MODELS)"
        for path, model in _policy_targets(policy)
        if model not in known
    ]
    if unknown:
        raise PolicyError(source, unknown)
    return policy


def parse_override(
    text: str | bytes, *, known_models: frozenset[str], source: str = "<override>"
) -> PolicyOverride:
    document = _yaml_mapping(text, source, allow_empty=True)
    try:
        override = PolicyOverride.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, _problems(exc)) from None
    unknown = [
        f"{path}: unknown model {model!r} (the policy does not declare it)"
        for path, model in _override_targets(override)
        if model not in known_models
    ]
    if unknown:
        raise PolicyError(source, unknown)
    return override


def apply_override(base: Policy, override: PolicyOverride, *, source: str = "<override>") -> Policy:
    """`base` with the override layered on: given fields replace the policy's, `patterns` are
    added to the policy's, `routing.rules` go before the policy's rules."""
    merged = base.model_dump()
    for section in ("privacy", "complexity", "injection"):
        changes = getattr(override, section).model_dump(exclude_none=True)
        if section == "privacy" and "patterns" in changes:
            changes["patterns"] = {**merged["privacy"]["patterns"], **changes["patterns"]}
        if section == "complexity" and "tiers" in changes:
            changes["tiers"] = {**merged["complexity"]["tiers"], **changes["tiers"]}
        merged[section] = {**merged[section], **changes}
    merged["routing"]["rules"] = [
        *override.model_dump()["routing"]["rules"],
        *merged["routing"]["rules"],
    ]
    if override.routing.default is not None:
        merged["routing"]["default"] = override.routing.default.model_dump()
    try:
        return Policy.model_validate(merged)
    except ValidationError as exc:  # e.g. thresholds out of order, a repeated rule name
        raise PolicyError(source, _problems(exc)) from None


def _yaml_mapping(text: str | bytes, source: str, *, allow_empty: bool = False) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [f"{where}: not valid YAML: {problem}"]) from None
    if document is None and allow_empty:
        return {}
    if not isinstance(document, dict):
        raise PolicyError(source, ["(top level): must be a mapping of sections"])
    return document


def _policy_targets(policy: Policy) -> Iterator[tuple[str, str]]:
    if policy.privacy.route_to is not None:
        yield "privacy.route_to", policy.privacy.route_to
    for tier in ("simple", "medium", "complex"):
        yield f"complexity.tiers.{tier}", getattr(policy.complexity.tiers, tier)
    if policy.injection.safe_model is not None:
        yield "injection.safe_model", policy.injection.safe_model
    yield from _routing_targets(policy.routing.rules, policy.routing.default)


def _override_targets(override: PolicyOverride) -> Iterator[tuple[str, str]]:
    if override.privacy.route_to is not None:
        yield "privacy.route_to", override.privacy.route_to
    if override.complexity.tiers is not None:
        for tier in ("simple", "medium", "complex"):
            model = getattr(override.complexity.tiers, tier)
            if model is not None:
                yield f"complexity.tiers.{tier}", model
    if override.injection.safe_model is not None:
        yield "injection.safe_model", override.injection.safe_model
    yield from _routing_targets(override.routing.rules, override.routing.default)


def _routing_targets(rules: Iterable[Rule], default: Action | None) -> Iterator[tuple[str, str]]:
    for index, rule in enumerate(rules):
        if rule.action.model is not None:
            yield f"routing.rules[{index}].action.model", rule.action.model
    if default is not None and default.model is not None:
        yield "routing.default.model", default.model


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        path = _field_path(error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required field is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            if not isinstance(error["input"], dict | list):
                message += f" (got {_short(error['input'])})"
        problems.append(f"{path}: {message}")
    return problems


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
