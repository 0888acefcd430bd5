"""A case-insensitive prefix index on APIKey.name for the admin search (PostgreSQL only).

Django renders `name__istartswith` as UPPER("name"::text) LIKE UPPER('x%'); under a non-C
collation only a text_pattern_ops index on that exact expression serves it. Other databases
(the SQLite laptop default) skip it: they have no operator classes and hold few keys.
"""

from django.db import migrations

INDEX = "apikey_name_upper_prefix"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {INDEX} ON tenants_apikey '
            '((UPPER("name"::text)) text_pattern_ops)'
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
