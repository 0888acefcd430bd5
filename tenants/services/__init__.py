"""Writes on tenants, members and keys.

Each service is keyword-only, writes one audit entry per object it changes and returns what the
caller needs; a raw key is returned once (IssuedKey) and never stored. Services that change what a
key or tenant may do call events.credentials_changed (it fires after commit). Rule violations
raise django.core.exceptions.ValidationError. `now` is injectable; it defaults to timezone.now().
"""

from tenants.services._fields import UNSET
from tenants.services.api_keys import (
    DEFAULT_GRACE,
    LAST_USED_RESOLUTION,
    MAX_GRACE,
    IssuedKey,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    api_key_set_expiry,
    api_key_update,
    api_keys_touch_last_used,
    validate_expiry,
    validate_key_models,
)
from tenants.services.members import (
    membership_add,
    membership_remove,
    membership_set_role,
    validate_owner_remains,
)
from tenants.services.tenants import (
    tenant_create,
    tenant_reactivate,
    tenant_suspend,
    tenant_update,
)

__all__ = [
    "DEFAULT_GRACE",
    "LAST_USED_RESOLUTION",
    "MAX_GRACE",
    "UNSET",
    "IssuedKey",
    "api_key_create",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_set_expiry",
    "api_key_update",
    "api_keys_touch_last_used",
    "membership_add",
    "membership_remove",
    "membership_set_role",
    "tenant_create",
    "tenant_reactivate",
    "tenant_suspend",
    "tenant_update",
    "validate_expiry",
    "validate_key_models",
    "validate_owner_remains",
]
