"""The billing part of the Celery beat schedule; settings.py sets
`CELERY_BEAT_SCHEDULE = BEAT_SCHEDULE` (merged with other apps' entries)."""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Every 2 s: usage reaches the ledger (and budgets rebuilt from it) within seconds. A run
    # that cannot start within 10 s is dropped; the next one drains the same stream.
    "billing-drain-usage": {
        "task": "billing.tasks.drain_usage_events",
        "schedule": 2.0,
        "options": {"expires": 10},
    },
    # Hourly buckets: the current and the two before (late events land in an older bucket).
    "billing-rollup-hours": {
        "task": "billing.tasks.rollup_hours",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    "billing-rollup-days": {
        "task": "billing.tasks.rollup_days",
        "schedule": 1800.0,
        "options": {"expires": 1500},
    },
    "billing-purge-old-usage": {
        "task": "billing.tasks.purge_old_usage",
        "schedule": crontab(hour=3, minute=17),
    },
}
