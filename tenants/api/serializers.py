"""Shapes of the management API. Validation of shape only; rules live in tenants.services."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.models import APIKey, AuditEntry, Membership, Tenant
from tenants.services import MAX_GRACE

_LIMIT = {"required": False, "allow_null": True, "min_value": 1}


class ModelNamesField(serializers.ListField):
    child = serializers.CharField(max_length=200)


class TenantSerializer(serializers.ModelSerializer):
    allowed_models = ModelNamesField(required=False)
    rpm_limit = serializers.IntegerField(**_LIMIT)
    tpm_limit = serializers.IntegerField(**_LIMIT)
    max_concurrency = serializers.IntegerField(**_LIMIT)

    class Meta:
        model = Tenant
        fields = (
            "id", "slug", "name", "status", "allowed_models", "rpm_limit", "tpm_limit",
            "max_concurrency", "is_response_cache_enabled", "created_at",
        )  # fmt: skip
        read_only_fields = ("id", "status", "created_at")
        extra_kwargs = {"name": {"required": False, "allow_blank": True}}  # noqa: RUF012


class TenantUpdateSerializer(TenantSerializer):
    class Meta(TenantSerializer.Meta):
        read_only_fields = ("id", "slug", "status", "created_at")


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "user", "username", "role", "created_at")
        read_only_fields = ("id", "user", "username", "created_at")


class MembershipCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.VIEWER)


class MembershipRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class APIKeySerializer(serializers.ModelSerializer):
    allowed_models = ModelNamesField(required=False)
    rpm_limit = serializers.IntegerField(**_LIMIT)
    tpm_limit = serializers.IntegerField(**_LIMIT)
    max_concurrency = serializers.IntegerField(**_LIMIT)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    state = serializers.SerializerMethodField()
    active_hint = serializers.SerializerMethodField()

    class Meta:
        model = APIKey
        fields = (
            "public_id", "name", "allowed_models", "rpm_limit", "tpm_limit", "max_concurrency",
            "is_admin", "expires_at", "state", "active_hint", "created_by", "created_at",
            "last_used_at", "revoked_at",
        )  # fmt: skip
        read_only_fields = (
            "public_id", "state", "active_hint", "created_by", "created_at", "last_used_at",
            "revoked_at",
        )  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=["active", "expired", "revoked"]))
    def get_state(self, api_key: APIKey) -> str:
        return api_key.state(timezone.now())

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_active_hint(self, api_key: APIKey) -> str | None:
        # Annotated by selectors.api_key_list; a key returned by a service has none loaded.
        return getattr(api_key, "active_hint", None)


class APIKeyUpdateSerializer(APIKeySerializer):
    class Meta(APIKeySerializer.Meta):
        read_only_fields = (*APIKeySerializer.Meta.read_only_fields, "is_admin")


class IssuedKeySerializer(APIKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The raw key. Shown in this response only; store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = (*APIKeySerializer.Meta.fields, "key")


class RotateSerializer(serializers.Serializer):
    grace_s = serializers.IntegerField(
        min_value=0,
        max_value=int(MAX_GRACE.total_seconds()),
        default=24 * 3600,
        help_text="How long the previous secret keeps working, in seconds (max 30 days).",
    )


class AuditEntrySerializer(serializers.ModelSerializer):
    actor_username = serializers.CharField(source="actor.username", read_only=True, default=None)

    class Meta:
        model = AuditEntry
        fields = (
            "id", "created_at", "action", "actor", "actor_username", "actor_key_id",
            "target_type", "target_id", "details",
        )  # fmt: skip
        read_only_fields = fields
