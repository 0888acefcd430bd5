"""The whole site's OpenAPI schema: generated, valid, and without a single warning."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management import call_command


def test_site_schema_validates_with_fail_on_warn_and_describes_budgets_and_csv(
    tmp_path: Path,
) -> None:
    target = tmp_path / "schema.yaml"

    # --fail-on-warn turns any "unable to guess serializer"-style warning into a CommandError.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    schema = yaml.safe_load(target.read_text())
    assert {"get", "post"} <= schema["paths"]["/api/v1/budgets/"].keys()
    assert {"get", "patch", "delete"} <= schema["paths"]["/api/v1/budgets/{id}/"].keys()
    budget = schema["components"]["schemas"]["Budget"]["properties"]
    assert budget["spent_usd"]["readOnly"] is True
    usage = schema["paths"]["/api/v1/usage"]["get"]
    assert {"application/json", "text/csv"} == usage["responses"]["200"]["content"].keys()
    assert {"start", "end", "group_by", "tenant"} <= {p["name"] for p in usage["parameters"]}
