"""`Authorization: Bearer ...` for the management API: a master key or a tenant-admin key.

A tenant-admin key is an ordinary AICC key created with `is_admin=True`; it acts on its own
tenant with the admin role. Master keys (settings AICC_MASTER_KEYS / AICC_DEPRECATED_MASTER_KEYS)
act on any tenant. Every refusal of a presented key says the same thing, so the answer does not
tell an attacker which part was wrong. Session users are handled by DRF's SessionAuthentication.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

from tenants import keys, selectors
from tenants.master_keys import MasterKeyMatch, master_key_verify
from tenants.selectors import CredentialRecord

_INVALID = "Invalid or expired API key."


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """request.auth for a bearer key: exactly one of `record` and `master` is set."""

    record: CredentialRecord | None = None
    master: MasterKeyMatch | None = None


class APIKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"
    clock: Callable[[], datetime] = staticmethod(timezone.now)

    def authenticate(self, request: Request) -> tuple[AnonymousUser, KeyCredential] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")
        raw_key = parts[1].decode("latin-1")
        master = master_key_verify(raw_key)
        if master is not None:
            return AnonymousUser(), KeyCredential(master=master)
        return AnonymousUser(), KeyCredential(record=self._tenant_admin_key(raw_key))

    def _tenant_admin_key(self, raw_key: str) -> CredentialRecord:
        parsed = keys.parse(raw_key)
        if parsed is None:
            raise AuthenticationFailed(_INVALID)
        now = self.clock()
        record = selectors.credential_record(key_public_id=parsed.key_id, now=now)
        if (
            record is None
            or record.match(parsed.digest, now) is None
            or record.is_revoked
            or record.is_expired(now)
            or not record.is_tenant_active
        ):
            raise AuthenticationFailed(_INVALID)
        if not record.is_admin:
            raise PermissionDenied("This key is not a tenant-admin key.")
        return record

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="aicc-management"'
