"""Who did something, and the one function that writes an audit entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from tenants.models import AuditEntry, Tenant


@dataclass(frozen=True, slots=True)
class Actor:
    """The principal behind a service call. `via` says which door it came through."""

    user: AbstractBaseUser | None = None
    key_id: str | None = None  # tenant-admin key public id, or "master:<fingerprint>"
    via: str = "system"  # "admin", "api", "cli", "system"

    @classmethod
    def cli(cls) -> Actor:
        return cls(via="cli")


SYSTEM = Actor()


def audit_record(
    *,
    tenant: Tenant,
    actor: Actor | None,
    action: str,
    target_type: str,
    target_id: str | int,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> AuditEntry:
    actor = actor or SYSTEM
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return AuditEntry.objects.create(
        tenant=tenant,
        actor=user,
        actor_key_id=actor.key_id or "",
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        details={"via": actor.via, **(details or {})},
        created_at=now,
    )
