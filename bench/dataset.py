"""Benchmark data: the tenants and keys the load presents, created through tenants.services, and
the big key table (1,000,000 keys over 10,000 tenants) bulk-inserted for the key-table scenario.

Run as a subprocess with DATABASE_URL / REDIS_URL set for the database it prepares; it prints one
JSON object on stdout (raw keys included: they are benchmark-only credentials in a benchmark
database and never leave the process tree except into the gitignored bench/results/):

    python -m bench.dataset small                       # 1 tenant, 10 keys
    python -m bench.dataset big --keys 1000000 --tenants 10000 --spread 1000
    python -m bench.dataset lookups --count 2000        # credential_record timing on this table

`feature_config()` is the one place that decides which limits and budgets the benchmark keys
carry; extend it when the gateway learns a new per-key feature.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicc_site.settings")

SMALL_TENANT_SLUG = "bench-main"
SAMPLE_PREFIX = "bench-sample"
BULK_KEY_NAME = "bench-bulk"
BULK_TENANT_PREFIX = "bench-bulk-"
KEYS_PER_TENANT_SAMPLE = 10
# Generous limits: every request takes the full limiter and budget path, none is refused.
RPM_LIMIT = 10_000_000
TPM_LIMIT = 1_000_000_000
MAX_CONCURRENCY = 10_000
BUDGET_USD = Decimal("1000000")
OUTPUT_MARKER = "BENCH-DATA "


@dataclass
class FeatureConfig:
    tenant_kwargs: dict[str, Any] = field(default_factory=dict)
    key_kwargs: dict[str, Any] = field(default_factory=dict)
    budget_usd: Decimal | None = None
    described: list[str] = field(default_factory=list)


def feature_config() -> FeatureConfig:
    """Which limits and budgets the benchmark tenants and keys get, by what the code supports."""
    from tenants import services

    config = FeatureConfig()
    limits = {"rpm_limit": RPM_LIMIT, "tpm_limit": TPM_LIMIT, "max_concurrency": MAX_CONCURRENCY}
    key_params = inspect.signature(services.api_key_create).parameters
    tenant_params = inspect.signature(services.tenant_create).parameters
    config.key_kwargs = {name: value for name, value in limits.items() if name in key_params}
    config.tenant_kwargs = {name: value for name, value in limits.items() if name in tenant_params}
    if config.key_kwargs or config.tenant_kwargs:
        config.described.append(
            "rate limits on tenant and key: "
            + ", ".join(
                f"{k}={v:,}" for k, v in {**config.tenant_kwargs, **config.key_kwargs}.items()
            )
        )
    try:
        from billing.models import Budget  # noqa: F401
        from billing.services import budget_set  # noqa: F401
    except ImportError:
        pass
    else:
        config.budget_usd = BUDGET_USD
        config.described.append(f"monthly budgets of {BUDGET_USD} USD on tenant and key")
    return config


def _setup_django() -> None:
    import django

    django.setup()


def _set_budgets(config: FeatureConfig, pairs: list[tuple[int, int | None]]) -> None:
    """Budgets for (tenant_id, key_id or None) pairs: through budget_set for a few, bulk beyond."""
    if config.budget_usd is None or not pairs:
        return
    from billing.models import Budget
    from billing.services import budget_set

    if len(pairs) <= 20:
        for tenant_id, key_id in pairs:
            budget_set(
                tenant_id=tenant_id,
                api_key_id=key_id,
                limit_usd=config.budget_usd,
                period=Budget.Period.MONTHLY,
            )
        return
    Budget.objects.bulk_create(
        [
            Budget(
                tenant_id=t, api_key_id=k, limit_usd=config.budget_usd, period=Budget.Period.MONTHLY
            )
            for t, k in pairs
        ],
        batch_size=2000,
        ignore_conflicts=True,
    )


def _tenant_with_keys(slug: str, key_count: int, config: FeatureConfig) -> dict[str, Any]:
    from tenants import services

    tenant = services.tenant_create(slug=slug, **config.tenant_kwargs)
    issued = [
        services.api_key_create(tenant=tenant, name=f"{slug}-{i}", **config.key_kwargs)
        for i in range(key_count)
    ]
    _set_budgets(config, [(tenant.pk, None), *((tenant.pk, k.api_key.pk) for k in issued)])
    return {"tenant_id": tenant.pk, "keys": [k.raw_key for k in issued]}


def _clear_all_tenants() -> None:
    from django.db import connection

    from tenants.models import Tenant

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE tenants_tenant CASCADE")
    else:
        Tenant.objects.all().delete()


def prepare_small() -> dict[str, Any]:
    """A fresh table: one tenant with 10 keys (the '10 keys, 1 tenant' side)."""
    _clear_all_tenants()
    config = feature_config()
    made = _tenant_with_keys(SMALL_TENANT_SLUG, KEYS_PER_TENANT_SAMPLE, config)
    return {**made, "features": config.described, **_table_size()}


def _table_size() -> dict[str, int]:
    from tenants.models import APIKey, Tenant

    return {"key_count": APIKey.objects.count(), "tenant_count": Tenant.objects.count()}


def _bulk_tenants(count: int) -> list[int]:
    from tenants.models import Tenant

    config = feature_config()
    existing = list(
        Tenant.objects.filter(slug__startswith=BULK_TENANT_PREFIX)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if len(existing) >= count:
        return existing[:count]
    Tenant.objects.bulk_create(
        [
            Tenant(slug=f"{BULK_TENANT_PREFIX}{i:06d}", name=f"bulk {i}", **config.tenant_kwargs)
            for i in range(len(existing), count)
        ],
        batch_size=5000,
    )
    return list(
        Tenant.objects.filter(slug__startswith=BULK_TENANT_PREFIX)
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )


def _bulk_public_id(index: int) -> str:
    # The same ids as the PostgreSQL path: 'b' and 11 hex digits, never a random key id's shape.
    return "b" + format(index, "x").rjust(11, "0")


def _insert_keys_postgres(tenant_ids: list[int], start: int, count: int) -> None:
    """Keys and their secrets generated inside PostgreSQL: one INSERT ... SELECT per table."""
    from django.db import connection

    config = feature_config()
    limits = config.key_kwargs
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tenants_apikey (public_id, tenant_id, name, allowed_models, rpm_limit,
                tpm_limit, max_concurrency, is_admin, created_at)
            SELECT 'b' || lpad(to_hex(i), 11, '0'), (%s::bigint[])[1 + i %% %s], %s, '[]'::jsonb,
                %s, %s, %s, false, now()
            FROM generate_series(%s, %s) AS i
            """,
            [
                tenant_ids,
                len(tenant_ids),
                BULK_KEY_NAME,
                limits.get("rpm_limit"),
                limits.get("tpm_limit"),
                limits.get("max_concurrency"),
                start,
                start + count - 1,
            ],
        )
        cursor.execute(
            """
            INSERT INTO tenants_apikeysecret (api_key_id, digest, hint, status, created_at)
            SELECT id, encode(sha256(convert_to('bulk:' || public_id, 'UTF8')), 'hex'),
                'aicc_' || public_id || '_…bulk', 'active', now()
            FROM tenants_apikey WHERE name = %s AND public_id >= %s
            """,
            [BULK_KEY_NAME, _bulk_public_id(start)],
        )
        cursor.execute(
            "ANALYZE tenants_apikey; ANALYZE tenants_apikeysecret; ANALYZE tenants_tenant"
        )


def _insert_keys_generic(tenant_ids: list[int], start: int, count: int) -> None:
    from tenants.models import APIKey, APIKeySecret

    limits = feature_config().key_kwargs
    batch = 5000
    for offset in range(start, start + count, batch):
        indexes = range(offset, min(offset + batch, start + count))
        made = APIKey.objects.bulk_create(
            [
                APIKey(
                    public_id=_bulk_public_id(i),
                    tenant_id=tenant_ids[i % len(tenant_ids)],
                    name=BULK_KEY_NAME,
                    **limits,
                )
                for i in indexes
            ]
        )
        APIKeySecret.objects.bulk_create(
            [
                APIKeySecret(
                    api_key_id=k.pk,
                    hint="bulk",
                    digest=hashlib.sha256(f"bulk:{k.public_id}".encode()).hexdigest(),
                )
                for k in made
            ]
        )


def prepare_big(*, key_count: int, tenant_count: int, spread: int) -> dict[str, Any]:
    """Ensure `key_count` bulk keys over `tenant_count` tenants (kept between runs: building them
    is the slow part), then add fresh sample keys the load can present:
    - 10 keys of one new tenant (the '1,000,000 keys' side of the key-table comparison),
    - one key in each of `spread` distinct bulk tenants (the '10,000 tenants' side).
    """
    from django.db import connection

    from tenants import services
    from tenants.models import APIKey, Tenant

    Tenant.objects.filter(slug__startswith=SAMPLE_PREFIX).delete()
    APIKey.objects.filter(name__startswith=SAMPLE_PREFIX).delete()
    tenant_ids = _bulk_tenants(tenant_count)
    existing = APIKey.objects.filter(name=BULK_KEY_NAME).count()
    insert = {"inserted": 0, "seconds": 0.0}
    if existing < key_count:
        started = time.perf_counter()
        if connection.vendor == "postgresql":
            _insert_keys_postgres(tenant_ids, existing, key_count - existing)
        else:
            _insert_keys_generic(tenant_ids, existing, key_count - existing)
        insert = {"inserted": key_count - existing, "seconds": time.perf_counter() - started}
    config = feature_config()
    one_tenant = _tenant_with_keys(f"{SAMPLE_PREFIX}-one", KEYS_PER_TENANT_SAMPLE, config)
    spread_ids = random.Random(7).sample(tenant_ids, min(spread, len(tenant_ids)))
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=spread_ids)}
    spread_keys = [
        services.api_key_create(tenant=tenants[t], name=f"{SAMPLE_PREFIX}-{i}", **config.key_kwargs)
        for i, t in enumerate(spread_ids)
    ]
    _set_budgets(
        config,
        [
            *((t, None) for t in spread_ids),
            *((k.api_key.tenant_id, k.api_key.pk) for k in spread_keys),
        ],
    )
    return {
        "one_tenant_keys": one_tenant["keys"],
        "spread_keys": [k.raw_key for k in spread_keys],
        "insert": insert,
        "features": config.described,
        **_table_size(),
    }


def time_lookups(count: int) -> dict[str, float]:
    """credential_record (the query behind an authentication cache miss) on random keys, in µs."""
    from tenants.models import APIKey
    from tenants.selectors import credential_record

    max_id = APIKey.objects.order_by("-id").values_list("id", flat=True).first() or 0
    rng = random.Random(11)
    ids = list(
        APIKey.objects.filter(
            id__in=[rng.randint(1, max_id) for _ in range(count * 2)]
        ).values_list("public_id", flat=True)[:count]
    )
    for public_id in ids[:50]:
        credential_record(key_public_id=public_id)
    samples = []
    for public_id in ids:
        started = time.perf_counter()
        credential_record(key_public_id=public_id)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "count": len(samples),
        "p50_us": samples[len(samples) // 2],
        "p99_us": samples[int(len(samples) * 0.99)],
        **_table_size(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark data")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("small")
    big = sub.add_parser("big")
    big.add_argument("--keys", type=int, default=1_000_000)
    big.add_argument("--tenants", type=int, default=10_000)
    big.add_argument("--spread", type=int, default=1000)
    lookups = sub.add_parser("lookups")
    lookups.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    _setup_django()
    if args.command == "small":
        out = prepare_small()
    elif args.command == "big":
        out = prepare_big(key_count=args.keys, tenant_count=args.tenants, spread=args.spread)
    else:
        out = time_lookups(args.count)
    # Logging may share stdout; the caller reads the line with this marker.
    sys.stdout.write(OUTPUT_MARKER + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
