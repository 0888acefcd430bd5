"""Budget periods as UTC calendar ranges. Pure functions, no I/O.

`period_bounds` gives the half-open range [start, end) that contains `now`; `period_key` names
that range for Redis counter keys and alert de-duplication ("2026-11-26", "2026-W48",
"2026-11", "total").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
TOTAL = "total"
PERIODS = (DAILY, WEEKLY, MONTHLY, TOTAL)

# "Total" has no calendar: everything ever recorded. The end is far enough never to be reached
# and still a valid datetime for database comparisons.
TOTAL_START = datetime(1970, 1, 1, tzinfo=UTC)
TOTAL_END = datetime(9999, 1, 1, tzinfo=UTC)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    now = _utc(now)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == DAILY:
        return midnight, midnight + timedelta(days=1)
    if period == WEEKLY:
        monday = midnight - timedelta(days=now.isoweekday() - 1)
        return monday, monday + timedelta(days=7)
    if period == MONTHLY:
        first = midnight.replace(day=1)
        next_first = (first + timedelta(days=32)).replace(day=1)
        return first, next_first
    if period == TOTAL:
        return TOTAL_START, TOTAL_END
    raise ValueError(f"unknown budget period {period!r}")


def period_key(period: str, now: datetime) -> str:
    now = _utc(now)
    if period == DAILY:
        return now.strftime("%Y-%m-%d")
    if period == WEEKLY:
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if period == MONTHLY:
        return now.strftime("%Y-%m")
    if period == TOTAL:
        return TOTAL
    raise ValueError(f"unknown budget period {period!r}")
