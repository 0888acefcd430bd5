"""Limits and budgets from the command line: create_api_key, set_limits, set_budget.

Every change must reach the gateways: each one publishes credentials_changed on real Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import Budget
from tenants import keys
from tenants.models import APIKey, AuditEntry, Tenant
from tenants.services import IssuedKey
from tests.tenants.credentials_feed import CredentialsFeed, credentials_feed_fixture  # noqa: F401


def _run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command and then its on-commit callbacks, as the real commit would."""

    def run(*args: str) -> list[str]:
        with django_capture_on_commit_callbacks(execute=True):
            return _run(*args)

    return run


def test_create_api_key_with_a_budget_keeps_the_raw_key_last(
    tenant_a: Tenant, committed: Callable[..., list[str]], credentials_feed: CredentialsFeed
) -> None:
    lines = committed(
        "create_api_key", "tenant-a", "--name", "ci", "--rpm", "60", "--tpm", "5000",
        "--max-concurrency", "4", "--budget-usd", "25.50", "--budget-period", "weekly",
    )  # fmt: skip

    parsed = keys.parse(lines[-1])
    assert parsed is not None
    key = APIKey.objects.get(public_id=parsed.key_id)
    assert (key.rpm_limit, key.tpm_limit, key.max_concurrency) == (60, 5000, 4)
    budget = Budget.objects.get(api_key=key)
    assert (budget.tenant_id, budget.limit_usd, budget.period) == (
        tenant_a.pk,
        Decimal("25.5"),
        "weekly",
    )
    assert any(line.startswith(f"budget {budget.pk}: 25.50 USD weekly") for line in lines)
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})


def test_create_api_key_budget_period_defaults_to_monthly(tenant_a: Tenant) -> None:
    lines = _run("create_api_key", "tenant-a", "--name", "ci", "--budget-usd", "0")

    parsed = keys.parse(lines[-1])
    assert parsed is not None
    budget = Budget.objects.get(api_key__public_id=parsed.key_id)
    assert (budget.limit_usd, budget.period) == (Decimal("0"), "monthly")


@pytest.mark.parametrize(
    "extra",
    [
        ("--budget-period", "weekly"),  # a period without an amount
        ("--budget-usd", "-1"),
        ("--budget-usd", "NaN"),
        ("--budget-usd", "ten"),
        ("--budget-usd", "5", "--budget-period", "yearly"),
        ("--rpm", "0"),
    ],
)
def test_create_api_key_refuses_bad_budgets_and_limits_without_creating_a_key(
    tenant_a: Tenant, extra: tuple[str, ...]
) -> None:
    with pytest.raises(CommandError):
        _run("create_api_key", "tenant-a", "--name", "ci", *extra)
    assert not APIKey.objects.exists()
    assert not Budget.objects.exists()


def test_set_limits_on_a_key_changes_only_the_given_limits_and_none_removes_one(
    key_a: IssuedKey, committed: Callable[..., list[str]], credentials_feed: CredentialsFeed
) -> None:
    key_id = key_a.api_key.public_id
    committed("set_limits", key_id, "--rpm", "60", "--tpm", "9000", "--max-concurrency", "3")
    credentials_feed.assert_published({"key_id": key_id})

    lines = committed("set_limits", f"aicc_{key_id}", "--tpm", "none")

    key = APIKey.objects.get(public_id=key_id)
    assert (key.rpm_limit, key.tpm_limit, key.max_concurrency) == (60, None, 3)
    assert lines == [f"limits of key {key_id}: rpm_limit=60, tpm_limit=none, max_concurrency=3"]
    credentials_feed.assert_published({"key_id": key_id})
    changes = AuditEntry.objects.filter(action="api_key.update").order_by("id")
    assert [entry.details["changed"] for entry in changes] == [
        {"rpm_limit": 60, "tpm_limit": 9000, "max_concurrency": 3},
        {"tpm_limit": None},
    ]
    assert changes.last().details["via"] == "cli"


def test_set_limits_on_a_tenant_slug_changes_the_tenant_and_publishes_its_id(
    tenant_a: Tenant,
    key_a: IssuedKey,
    committed: Callable[..., list[str]],
    credentials_feed: CredentialsFeed,
) -> None:
    committed("set_limits", "tenant-a", "--rpm", "600", "--max-concurrency", "20")
    committed("set_limits", "tenant-a", "--max-concurrency", "none")

    tenant = Tenant.objects.get(pk=tenant_a.pk)
    assert (tenant.rpm_limit, tenant.tpm_limit, tenant.max_concurrency) == (600, None, None)
    assert APIKey.objects.get(pk=key_a.api_key.pk).rpm_limit is None  # the key is untouched
    credentials_feed.assert_published({"tenant_id": tenant_a.pk}, {"tenant_id": tenant_a.pk})


def test_set_limits_to_the_current_values_changes_and_publishes_nothing(
    key_a: IssuedKey, committed: Callable[..., list[str]], credentials_feed: CredentialsFeed
) -> None:
    committed("set_limits", key_a.api_key.public_id, "--rpm", "none")

    credentials_feed.assert_published()
    assert not AuditEntry.objects.filter(action="api_key.update").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant-a",), "nothing to change"),
        (("tenant-a", "--rpm", "0"), "positive integer or 'none'"),
        (("tenant-a", "--tpm", "lots"), "positive integer or 'none'"),
        (("nobody", "--rpm", "1"), "no API key id or tenant slug"),
    ],
)
def test_set_limits_refuses_bad_input(
    tenant_a: Tenant, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        _run("set_limits", *args)
    assert Tenant.objects.get(pk=tenant_a.pk).rpm_limit is None


def test_set_budget_accepts_an_aicc_prefixed_key_id_and_publishes(
    key_a: IssuedKey, committed: Callable[..., list[str]], credentials_feed: CredentialsFeed
) -> None:
    api_key = key_a.api_key
    committed("set_budget", f"aicc_{api_key.public_id}", "--limit-usd", "7.25", "--period", "daily")

    budget = Budget.objects.get(api_key=api_key)
    assert (budget.limit_usd, budget.period) == (Decimal("7.25"), "daily")
    credentials_feed.assert_published({"tenant_id": api_key.tenant_id})


def test_set_budget_remove_deletes_the_budget_and_publishes(
    tenant_a: Tenant, committed: Callable[..., list[str]], credentials_feed: CredentialsFeed
) -> None:
    committed("set_budget", "tenant-a", "--limit-usd", "100")
    budget = Budget.objects.get(tenant=tenant_a, api_key=None)
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})

    lines = committed("set_budget", "tenant-a", "--remove")

    assert lines == [f"removed budget {budget.pk} of tenant tenant-a"]
    assert not Budget.objects.exists()
    credentials_feed.assert_published({"tenant_id": tenant_a.pk})
    with pytest.raises(CommandError, match="has no budget"):
        _run("set_budget", "tenant-a", "--remove")


def test_set_budget_needs_an_amount_and_refuses_a_negative_one(tenant_a: Tenant) -> None:
    with pytest.raises(CommandError, match="--limit-usd"):
        _run("set_budget", "tenant-a")
    with pytest.raises(CommandError, match="amount of USD"):
        _run("set_budget", "tenant-a", "--limit-usd", "-5")
    assert not Budget.objects.exists()
