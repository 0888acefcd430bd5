"""Seed prices: public list prices as of 2025-06-01, USD per 1M tokens.

Sources: the providers' pricing pages (OpenAI API pricing, Anthropic pricing), cross-checked on
2026-11-26 against public price tables. Standard (non-batch) tier. Anthropic's cache *writes*
(1.25x input) are not modelled; `cached_input` is the cache-read price. Anthropic models are
seeded under both their dated id and the short alias a LiteLLM config usually exposes.
A price change is a new row with a later effective_from (in the admin), never an edit here.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = datetime(2025, 6, 1, tzinfo=UTC)
NOTE = "list price as of 2025-06-01"

# model: (input, output, cached input or None = same as input)
PRICES = {
    "gpt-4o": ("2.50", "10.00", "1.25"),
    "gpt-4o-mini": ("0.15", "0.60", "0.075"),
    "gpt-4.1": ("2.00", "8.00", "0.50"),
    "gpt-4.1-mini": ("0.40", "1.60", "0.10"),
    "gpt-4.1-nano": ("0.10", "0.40", "0.025"),
    "o3-mini": ("1.10", "4.40", "0.55"),
    "o4-mini": ("1.10", "4.40", "0.275"),
    "text-embedding-3-small": ("0.02", "0", None),
    "text-embedding-3-large": ("0.13", "0", None),
    "claude-3-5-sonnet": ("3.00", "15.00", "0.30"),
    "claude-3-5-sonnet-20241022": ("3.00", "15.00", "0.30"),
    "claude-sonnet-4": ("3.00", "15.00", "0.30"),
    "claude-sonnet-4-20250514": ("3.00", "15.00", "0.30"),
    "claude-3-5-haiku": ("0.80", "4.00", "0.08"),
    "claude-3-5-haiku-20241022": ("0.80", "4.00", "0.08"),
    # Served on our own hardware: metered, not charged.
    "llama3-local": ("0", "0", "0"),
}


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for model, (input_usd, output_usd, cached_usd) in PRICES.items():
        ModelPrice.objects.get_or_create(
            model=model,
            effective_from=EFFECTIVE_FROM,
            defaults={
                "input_usd_per_1m": Decimal(input_usd),
                "output_usd_per_1m": Decimal(output_usd),
                "cached_input_usd_per_1m": None if cached_usd is None else Decimal(cached_usd),
                "note": NOTE,
            },
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ModelPrice.objects.filter(effective_from=EFFECTIVE_FROM, note=NOTE).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_ledger")]

    operations = [migrations.RunPython(seed, unseed)]
