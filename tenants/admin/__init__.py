"""Django admin for tenants, members, API keys and the audit log.

Superusers see everything. A staff user who is owner or admin of tenants (Membership) sees and
changes only those tenants' objects: querysets, FK choices and direct URLs are all scoped
(see scoping.py). Writes go through tenants.services, so the admin audits like every other door.
"""

from tenants.admin import audit, keys, members, tenant  # noqa: F401  (registers the admins)
