"""Which upstreams exist and what to try, in order, for a model: the primary upstream, then the
model's configured fallbacks. Built once per process from settings; a bad configuration stops
start-up naming the setting and the entry."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel, ConfigDict, HttpUrl, ValidationError

from gateway.upstream import Upstream


class _UpstreamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    api_key: str = ""


class _FallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    upstream: Upstream
    model: str | None  # None: the model the request asked for

    def describe(self, requested_model: str) -> str:
        return f"{self.upstream.name}/{self.model or requested_model}"


class Targets:
    def __init__(
        self,
        primary: Upstream,
        extra: dict[str, Upstream],
        fallbacks: dict[str, tuple[Target, ...]],
    ) -> None:
        self.primary = primary
        self.by_name = {primary.name: primary, **extra}
        self._fallbacks = fallbacks

    def plan(self, model: str) -> tuple[Target, ...]:
        """The primary upstream with the requested model, then the model's fallbacks."""
        return (Target(self.primary, None), *self._fallbacks.get(model, ()))

    @classmethod
    def from_settings(cls) -> Targets:
        primary = Upstream(
            name=settings.AICC_UPSTREAM_NAME,
            base_url=settings.AICC_UPSTREAM_URL,
            api_key=settings.AICC_UPSTREAM_API_KEY,
        )
        extra = {
            name: Upstream(name=name, base_url=str(spec.url).rstrip("/"), api_key=spec.api_key)
            for name, spec in _parse("AICC_EXTRA_UPSTREAMS", dict[str, _UpstreamSpec]).items()
        }
        known = {primary.name: primary, **extra}
        fallbacks: dict[str, tuple[Target, ...]] = {}
        for model, specs in _parse("AICC_FALLBACKS", dict[str, list[_FallbackSpec]]).items():
            targets = []
            for index, spec in enumerate(specs):
                name = spec.upstream or primary.name
                if name not in known:
                    raise ImproperlyConfigured(
                        f"AICC_FALLBACKS[{model!r}][{index}].upstream: unknown upstream {name!r} "
                        f"(known: {', '.join(sorted(known))})"
                    )
                targets.append(Target(known[name], spec.model))
            fallbacks[model] = tuple(targets)
        return cls(primary, extra, fallbacks)


def _parse(setting: str, shape: object) -> dict:  # type: ignore[type-arg]
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(shape).validate_python(getattr(settings, setting))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ImproperlyConfigured(f"{setting} is invalid: {problems}") from None
