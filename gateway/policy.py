"""The routing policy: loading, validation of route targets, and tenant overrides layered on it.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from pydantic import ValidationError

from gateway.policy_schema import Action, Policy, PolicyOverride, Rule


class PolicyError(ValueError):
    """An invalid policy or override; `problems` are `field.path: what is wrong` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid routing policy {source}: " + "; ".join(problems))


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
