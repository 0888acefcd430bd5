"""The management API (DRF) under /api/v1/: tenants, members, keys, audit log."""
