"""Management API views: thin, each one resolves the caller's scope, calls a selector or a service.

`ManagementView.initial` reads like the pipeline: authenticate (DRF), rate-limit, resolve the
tenant scope from the caller, check the role. Querysets always come from a selector that takes
that tenant, so another tenant's id is simply not found (404).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django_ratelimit.core import is_ratelimited
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from tenants import selectors, services
from tenants.api import schema  # noqa: F401  (registers the bearer-key security scheme)
from tenants.api import serializers as s
from tenants.api.access import (
    TENANT_HEADER,
    Caller,
    IsManagementCaller,
    IsPlatformOperator,
    Scope,
    managed_members_only,
    require_role,
    resolve_scope,
)
from tenants.api.authentication import APIKeyAuthentication
from tenants.models import APIKey, AuditEntry, Membership, Tenant

DEFAULT_RATE = "120/m"

TENANT_HEADER_PARAMETER = OpenApiParameter(
    TENANT_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Tenant slug; needed by platform operators and members of several tenants.",
)


def management_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Service rule violations (Django ValidationError) become 400s; the rest is DRF's."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail)
    return exception_handler(exc, context)


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"


class AuditNewestFirst(NewestFirst):
    ordering = ("-created_at", "-id")


class ManagementView(viewsets.GenericViewSet):
    authentication_classes = (APIKeyAuthentication, SessionAuthentication)
    permission_classes = (IsManagementCaller,)
    pagination_class = NewestFirst
    is_tenant_scoped = True
    write_role = Membership.Role.ADMIN
    caller: Caller
    scope: Scope

    def get_exception_handler(self) -> Any:
        return management_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.caller = Caller.of(request)
        self._rate_limit(request)
        if self.is_tenant_scoped:
            self.scope = resolve_scope(self.caller, request)
            require_role(self.scope, request, write_role=self.write_role)

    def _rate_limit(self, request: Request) -> None:
        rate = getattr(settings, "AICC_MANAGEMENT_API_RATE", DEFAULT_RATE)
        if is_ratelimited(
            request,
            group="tenants.management_api",
            key=lambda group, req: self.caller.rate_limit_key,
            rate=rate,
            increment=True,
        ):
            raise Throttled(detail="Too many management API requests; slow down.")

    def is_schema_view(self) -> bool:
        return getattr(self, "swagger_fake_view", False)


@extend_schema_view(
    suspend=extend_schema(request=None, responses=s.TenantSerializer),
    reactivate=extend_schema(request=None, responses=s.TenantSerializer),
)
class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ManagementView):
    """Tenants: platform operators only (superuser sessions and master keys)."""

    permission_classes = (IsManagementCaller, IsPlatformOperator)
    is_tenant_scoped = False
    serializer_class = s.TenantSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Tenant]:
        return selectors.tenant_list().order_by("-id")

    def get_serializer_class(self) -> type[s.TenantSerializer]:
        if self.action == "partial_update":
            return s.TenantUpdateSerializer
        return s.TenantSerializer

    def create(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = services.tenant_create(**serializer.validated_data, actor=self.caller.actor)
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tenant = services.tenant_update(
            tenant=serializer.instance, **serializer.validated_data, actor=self.caller.actor
        )
        return Response(s.TenantSerializer(tenant).data)

    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str) -> Response:
        tenant = services.tenant_suspend(tenant=self.get_object(), actor=self.caller.actor)
        return Response(s.TenantSerializer(tenant).data)

    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, pk: str) -> Response:
        tenant = services.tenant_reactivate(tenant=self.get_object(), actor=self.caller.actor)
        return Response(s.TenantSerializer(tenant).data)


@extend_schema_view(
    list=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
    retrieve=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
    create=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=s.MembershipCreateSerializer,
        responses={201: s.MembershipSerializer},
    ),
    partial_update=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=s.MembershipRoleSerializer,
        responses=s.MembershipSerializer,
    ),
    destroy=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
)
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ManagementView):
    """Members of the caller's tenant. Owners alone grant or remove the owner role."""

    serializer_class = s.MembershipSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Membership]:
        if self.is_schema_view():
            return Membership.objects.none()
        return selectors.membership_list(tenant=self.scope.tenant).order_by("-id")

    def create(self, request: Request) -> Response:
        incoming = s.MembershipCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        role = incoming.validated_data["role"]
        managed_members_only(self.scope, role)
        user = get_user_model().objects.filter(username=incoming.validated_data["username"]).first()
        if user is None:
            raise ValidationError({"username": "No such user."})
        membership = services.membership_add(
            tenant=self.scope.tenant, user=user, role=role, actor=self.caller.actor
        )
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        incoming = s.MembershipRoleSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        managed_members_only(self.scope, membership.role)
        managed_members_only(self.scope, incoming.validated_data["role"])
        membership = services.membership_set_role(
            membership=membership, role=incoming.validated_data["role"], actor=self.caller.actor
        )
        return Response(s.MembershipSerializer(membership).data)

    def destroy(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        managed_members_only(self.scope, membership.role)
        services.membership_remove(membership=membership, actor=self.caller.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
    retrieve=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
    create=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=s.APIKeySerializer,
        responses={201: s.IssuedKeySerializer},
    ),
    partial_update=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=s.APIKeyUpdateSerializer,
        responses=s.APIKeySerializer,
    ),
    rotate=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=s.RotateSerializer,
        responses=s.IssuedKeySerializer,
    ),
    revoke=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER], request=None, responses=s.APIKeySerializer
    ),
)
class APIKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ManagementView):
    """The caller's tenant's keys. The raw key appears in the create and rotate responses only."""

    serializer_class = s.APIKeySerializer
    lookup_field = "public_id"
    lookup_value_regex = "[0-9a-z]{12}"

    def get_queryset(self) -> QuerySet[APIKey]:
        if self.is_schema_view():
            return APIKey.objects.none()
        return selectors.api_key_list(tenant=self.scope.tenant)

    def _issued(self, issued: services.IssuedKey, code: int) -> Response:
        api_key = selectors.api_key_get(
            tenant=self.scope.tenant, key_public_id=issued.api_key.public_id
        )
        return Response({**s.APIKeySerializer(api_key).data, "key": issued.raw_key}, status=code)

    def create(self, request: Request) -> Response:
        serializer = s.APIKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("is_admin") and not self.scope.at_least(
            Membership.Role.OWNER
        ):
            raise ValidationError({"is_admin": "Only an owner may create tenant-admin keys."})
        issued = services.api_key_create(
            tenant=self.scope.tenant, **serializer.validated_data, actor=self.caller.actor
        )
        return self._issued(issued, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, public_id: str) -> Response:
        api_key = self.get_object()
        serializer = s.APIKeyUpdateSerializer(api_key, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "expires_at" in changes:
            services.api_key_set_expiry(
                api_key=api_key, expires_at=changes.pop("expires_at"), actor=self.caller.actor
            )
        services.api_key_update(api_key=api_key, **changes, actor=self.caller.actor)
        return Response(s.APIKeySerializer(self.get_object()).data)

    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, public_id: str) -> Response:
        api_key = self.get_object()
        incoming = s.RotateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        issued = services.api_key_rotate(
            api_key=api_key,
            grace=timedelta(seconds=incoming.validated_data["grace_s"]),
            actor=self.caller.actor,
        )
        return self._issued(issued, status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, public_id: str) -> Response:
        services.api_key_revoke(api_key=self.get_object(), actor=self.caller.actor)
        return Response(s.APIKeySerializer(self.get_object()).data)


@extend_schema_view(
    list=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
    retrieve=extend_schema(parameters=[TENANT_HEADER_PARAMETER]),
)
class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ManagementView):
    """The caller's tenant's audit log, newest first. Read-only."""

    serializer_class = s.AuditEntrySerializer
    pagination_class = AuditNewestFirst
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[AuditEntry]:
        if self.is_schema_view():
            return AuditEntry.objects.none()
        return selectors.audit_list(
            tenant=self.scope.tenant, action=self.request.query_params.get("action")
        )
