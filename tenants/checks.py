"""System checks: bad master-key configuration stops `manage.py check` and start-up."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from tenants import master_keys


@register()
def check_master_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    current, deprecated = master_keys.configured()
    return [
        Error(problem, id="tenants.E001")
        for problem in master_keys.configuration_problems(current, deprecated)
    ]
