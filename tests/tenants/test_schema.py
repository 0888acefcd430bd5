from __future__ import annotations

from typing import Any

from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_management_api_schema_generates_validates_and_has_no_warnings(capsys: Any) -> None:
    generator = SchemaGenerator(patterns=[path("api/v1/", include("tenants.urls"))])
    schema = generator.get_schema(request=None, public=True)

    validate_schema(schema)
    assert "/api/v1/keys/{public_id}/rotate/" in schema["paths"]
    assert "bearerKey" in schema["components"]["securitySchemes"]
    issued = schema["components"]["schemas"]["IssuedKey"]["properties"]
    assert issued["key"]["readOnly"] is True
    problems = capsys.readouterr().err
    assert "Warning" not in problems and "Error" not in problems, problems
