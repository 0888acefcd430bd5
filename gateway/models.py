"""The gateway's one table: per-tenant routing overrides, layered on the policy file.

An override is a partial policy in YAML (same sections and field names as the policy file,
every field optional); see gateway.policy.apply_override for how it layers. It is validated
against the policy file in force when saved, and again when a gateway process first uses it
(the policy may have changed since): an override that no longer validates is ignored and
logged. Writes go through gateway.overrides (audited, and they tell the gateways).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from gateway.policy import (
    PolicyError,
    apply_override,
    default_policy_path,
    load_policy,
    parse_override,
)
from gateway.policy_schema import PolicyOverride


class TenantRoutingOverride(models.Model):
    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="routing_override"
    )
    document = models.TextField(
        blank=True,
        help_text=(
            "YAML with any of the policy's sections privacy, complexity, injection, routing. "
            "Fields given replace the policy's; privacy.patterns are added to the policy's; "
            "routing.rules run before the policy's rules."
        ),
    )
    is_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "tenant routing override"

    def __str__(self) -> str:
        return f"routing override of {self.tenant}"

    def parsed(self, *, known_models: frozenset[str]) -> PolicyOverride:
        """The document validated; PolicyError names each problem by its field path."""
        return parse_override(self.document, known_models=known_models, source="override")

    def clean(self) -> None:
        try:
            loaded = load_policy(default_policy_path())
        except PolicyError as exc:
            raise ValidationError(f"The policy file itself is invalid: {exc}") from exc
        try:
            apply_override(loaded.policy, self.parsed(known_models=loaded.known_models))
        except PolicyError as exc:
            raise ValidationError({"document": exc.problems}) from exc
