"""The usage report API: GET /api/v1/usage?start=&end=&group_by=day,model,key&format=json|csv.

Scoped to the caller's tenant, resolved by `caller_tenant_id`, the one seam between how a caller
authenticates and which tenant's data it may read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import (
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.serializers import UsageQuerySerializer, query_data
from tenants.models import APIKey, Membership


def caller_tenant_id(request: Request) -> int:
    """The tenant whose data the caller may read.

    - `request.auth` carrying a `tenant_id` (an API-key credential) decides by itself;
    - otherwise the user's memberships: the only one, or the one named by `?tenant=<slug>`.
    """
    auth_tenant_id = getattr(request.auth, "tenant_id", None)
    if isinstance(auth_tenant_id, int):
        return auth_tenant_id
    user = request.user
    if not user or not user.is_authenticated:
        raise NotAuthenticated()
    memberships = list(
        Membership.objects.filter(user=user).values_list("tenant_id", "tenant__slug")
    )
    slug = request.query_params.get("tenant")
    if slug:
        for tenant_id, tenant_slug in memberships:
            if tenant_slug == slug:
                return tenant_id
        # Same answer whether the tenant exists or not: no probing for other tenants' slugs.
        raise NotFound("no such tenant")
    if len(memberships) == 1:
        return memberships[0][0]
    if not memberships:
        raise PermissionDenied("you are not a member of any tenant")
    raise ValidationError({"tenant": "you belong to several tenants: pass ?tenant=<slug>"})


class UsageCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if isinstance(data, dict) and "rows" in data:
            writer.writerow(data["columns"])
            for row in data["rows"]:
                writer.writerow([row[column] for column in data["columns"]])
        else:  # an error body
            for key, value in (data or {}).items():
                writer.writerow([key, value])
        return buffer.getvalue().encode()


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _name_keys(tenant_id: int, rows: list[dict[str, object]]) -> None:
    """Show keys by public id; a deleted key's usage stays, labelled by its old row id."""
    public_ids = dict(
        APIKey.objects.filter(tenant_id=tenant_id, pk__in={row["key"] for row in rows}).values_list(
            "pk", "public_id"
        )
    )
    for row in rows:
        row["key"] = public_ids.get(row["key"], f"deleted:{row['key']}")


class UsageReportView(APIView):
    permission_classes = (permissions.AllowAny,)  # caller_tenant_id decides
    renderer_classes = (JSONRenderer, UsageCSVRenderer)

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, required=True),
            OpenApiParameter("end", OpenApiTypes.DATE, required=True, description="inclusive"),
            OpenApiParameter("group_by", str, many=True, enum=sorted(selectors.GROUP_FIELDS)),
            OpenApiParameter("tenant", str, description="tenant slug, for members of several"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        tenant_id = caller_tenant_id(request)
        query = UsageQuerySerializer(data=query_data(request.query_params))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        rows = selectors.usage_report(
            tenant_id=tenant_id,
            start=params["start"],
            end=params["end"],
            group_by=params["group_by"],
        )
        if "key" in params["group_by"]:
            _name_keys(tenant_id, rows)
        columns = [*params["group_by"], *selectors.REPORT_COLUMNS]
        body = {
            "start": params["start"].isoformat(),
            "end": params["end"].isoformat(),
            "group_by": params["group_by"],
            "columns": columns,
            "rows": [{column: _plain(row[column]) for column in columns} for row in rows],
        }
        response = Response(body)
        if request.accepted_renderer.format == "csv":
            filename = f"usage-{params['start']}-{params['end']}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
