"""Who is calling the management API, and which tenant and role they act with.

- master key or superuser session: platform operator, any tenant, owner role;
- tenant-admin key: its own tenant, admin role;
- session user: a tenant they are a member of, with their membership role.

The tenant comes from the caller, never from a request body. A caller with access to several
tenants names one with the `X-AICC-Tenant: <slug>` header; a tenant the caller cannot act on is
indistinguishable from one that does not exist (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.api.authentication import KeyCredential
from tenants.audit import Actor
from tenants.models import Membership, Tenant

TENANT_HEADER = "X-AICC-Tenant"
_ROLE_RANK = {Membership.Role.VIEWER: 0, Membership.Role.ADMIN: 1, Membership.Role.OWNER: 2}


@dataclass(frozen=True)
class Caller:
    user: AbstractBaseUser | None
    credential: KeyCredential | None

    @classmethod
    def of(cls, request: Request) -> Caller:
        credential = request.auth if isinstance(request.auth, KeyCredential) else None
        user = request.user if request.user and request.user.is_authenticated else None
        return cls(user=user, credential=credential)

    @property
    def is_platform(self) -> bool:
        if self.credential is not None:
            return self.credential.master is not None
        return bool(self.user is not None and self.user.is_superuser)

    @property
    def actor(self) -> Actor:
        if self.credential is not None and self.credential.master is not None:
            return Actor(key_id=self.credential.master.actor_key_id, via="api")
        if self.credential is not None and self.credential.record is not None:
            return Actor(key_id=self.credential.record.key_public_id, via="api")
        return Actor(user=self.user, via="api")

    @property
    def rate_limit_key(self) -> str:
        if self.credential is not None and self.credential.master is not None:
            return self.credential.master.actor_key_id
        if self.credential is not None and self.credential.record is not None:
            return f"key:{self.credential.record.key_public_id}"
        return f"user:{self.user.pk if self.user else 'anonymous'}"


@dataclass(frozen=True)
class Scope:
    tenant: Tenant
    role: str

    def at_least(self, role: str) -> bool:
        return _ROLE_RANK[self.role] >= _ROLE_RANK[role]


def resolve_scope(caller: Caller, request: Request) -> Scope:
    slug = request.headers.get(TENANT_HEADER, "").strip()
    if caller.is_platform:
        if not slug:
            raise ParseError(f"Name the tenant with the {TENANT_HEADER} header.")
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise NotFound("No such tenant.")
        return Scope(tenant=tenant, role=Membership.Role.OWNER)
    if caller.credential is not None and caller.credential.record is not None:
        record = caller.credential.record
        if slug and slug != record.tenant_slug:
            raise NotFound("No such tenant.")
        tenant = Tenant.objects.get(pk=record.tenant_id)
        return Scope(tenant=tenant, role=Membership.Role.ADMIN)
    memberships = Membership.objects.filter(user=caller.user).select_related("tenant")
    if slug:
        memberships = memberships.filter(tenant__slug=slug)
    found = list(memberships[:2])
    if not found:
        raise NotFound("No such tenant.")
    if len(found) > 1:
        raise ParseError(
            f"You belong to several tenants: name one with the {TENANT_HEADER} header."
        )
    return Scope(tenant=found[0].tenant, role=found[0].role)


class IsManagementCaller(BasePermission):
    """An authenticated session user, a tenant-admin key or a master key."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, KeyCredential) or bool(
            request.user and request.user.is_authenticated
        )


class IsPlatformOperator(BasePermission):
    message = "Only platform operators (superusers, master keys) may manage tenants."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return Caller.of(request).is_platform


def require_role(
    scope: Scope, request: Request, *, write_role: str = Membership.Role.ADMIN
) -> None:
    """Viewers read; writing needs `write_role` or better."""
    if request.method in SAFE_METHODS:
        return
    if not scope.at_least(write_role):
        raise PermissionDenied(f"This needs the {write_role} role in the tenant.")


def managed_members_only(scope: Scope, role: str) -> None:
    """Only owners (and platform operators) grant, change or remove the owner role."""
    if role == Membership.Role.OWNER and not scope.at_least(Membership.Role.OWNER):
        raise PermissionDenied("Only an owner may grant, change or remove the owner role.")
