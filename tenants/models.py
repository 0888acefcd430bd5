"""Tenants, their members, their API keys and the audit log.

An APIKey is the stable thing (public id, name, tenant, allowed models, limits); its secrets come
and go with rotation. Only digests of secrets are stored. Writes go through tenants.services,
reads through tenants.selectors; the methods here are single-row rules.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


def _limit_field(help_text: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text=help_text
    )


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Empty list: every model the upstream serves.
    allowed_models = models.JSONField(default=list, blank=True)
    # Defaults for the whole tenant; empty means unlimited.
    rpm_limit = _limit_field("Requests per minute for the whole tenant; empty = unlimited.")
    tpm_limit = _limit_field("Tokens per minute for the whole tenant; empty = unlimited.")
    max_concurrency = _limit_field("Requests in flight for the whole tenant; empty = unlimited.")
    is_response_cache_enabled = models.BooleanField(
        default=True,
        help_text="Serve repeated deterministic requests (temperature 0, embeddings) from the "
        "response cache.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        VIEWER = "viewer"

    # Roles that may change keys and members (in the admin and the management API).
    MANAGING_ROLES = (Role.OWNER, Role.ADMIN)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique"),
        )
        indexes = (models.Index(fields=["tenant", "role"], name="membership_tenant_role"),)

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in self.MANAGING_ROLES


class APIKey(models.Model):
    public_id = models.CharField(max_length=12, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    # Empty list: whatever the tenant allows (see selectors.effective_allowed_models).
    allowed_models = models.JSONField(default=list, blank=True)
    rpm_limit = _limit_field("Requests per minute for this key; empty = only the tenant's limit.")
    tpm_limit = _limit_field("Tokens per minute for this key; empty = only the tenant's limit.")
    max_concurrency = _limit_field("Requests in flight for this key; empty = tenant's limit.")
    # A management key: may call the management API for its own tenant with the admin role.
    is_admin = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        indexes = (
            # Listing a tenant's keys newest first (admin, API cursor pagination): id order is
            # creation order and unique, so it pages without an extra tiebreaker sort.
            models.Index(fields=["tenant", "-id"], name="apikey_tenant_newest"),
            # The case-insensitive prefix index for admin name search is PostgreSQL-only
            # (text_pattern_ops); migration 0002 creates it there.
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def state(self, now: datetime) -> str:
        if self.is_revoked:
            return "revoked"
        if self.is_expired(now):
            return "expired"
        return "active"


class APIKeySecret(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DEPRECATED = "deprecated"
        REVOKED = "revoked"

    api_key = models.ForeignKey(APIKey, on_delete=models.CASCADE, related_name="secrets")
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=40)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    deprecated_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API key secret"
        indexes = (models.Index(fields=["api_key", "status"], name="apikeysecret_key_status"),)

    def __str__(self) -> str:
        return self.hint

    def is_usable(self, now: datetime) -> bool:
        if self.status == self.Status.ACTIVE:
            return True
        return (
            self.status == self.Status.DEPRECATED
            and self.deprecated_until is not None
            and now < self.deprecated_until
        )


class AuditEntry(models.Model):
    """One operator action. `details` holds ids, names and hints, never a secret or digest."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="audit_entries")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Public id of the tenant-admin key that acted, "master:<fingerprint>" for a master key,
    # "" when a user (or the system) acted.
    actor_key_id = models.CharField(max_length=32, blank=True, default="")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = (
            models.Index(fields=["tenant", "-created_at", "-id"], name="audit_tenant_newest"),
            models.Index(fields=["-created_at", "-id"], name="audit_newest"),
        )

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_type}:{self.target_id}"
        )
