"""The billing API under /api/v1/: the usage report and budgets.

- GET usage?start=&end=&group_by=day,model,key&format=json|csv, scoped to the caller's tenant by
  `caller_tenant_id`, the one seam between how a caller authenticates and which tenant's data it
  may read.
- budgets/ and budgets/{id}/: a management API resource like keys and members; it reuses
  tenants.api's authentication, tenant scope and roles (ManagementView), so another tenant's
  budget is simply not found.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, permissions, status
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

from billing import selectors, services
from billing.models import Budget
from billing.serializers import (
    BudgetCreateSerializer,
    BudgetSerializer,
    UsageQuerySerializer,
    UsageReportSerializer,
    query_data,
)
from tenants import selectors as tenant_selectors
from tenants.api.views import TENANT_HEADER_PARAMETER, ManagementView
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


_REPORT = (
    "JSON by default; CSV with format=csv or Accept: text/csv (a header line of `columns`, then "
    "one line per row, sent as an attachment)."
)


class UsageReportView(APIView):
    permission_classes = (permissions.AllowAny,)  # caller_tenant_id decides
    renderer_classes = (JSONRenderer, UsageCSVRenderer)

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, required=True),
            OpenApiParameter("end", OpenApiTypes.DATE, required=True, description="inclusive"),
            OpenApiParameter(
                "group_by",
                str,
                many=True,
                enum=sorted(selectors.GROUP_FIELDS),
                description="repeat the parameter or separate names by commas",
            ),
            OpenApiParameter("tenant", str, description="tenant slug, for members of several"),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(UsageReportSerializer, description=_REPORT),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=_REPORT),
        },
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


def _billing_call(call: Callable[[], Budget]) -> Budget:
    try:
        return call()
    except services.BillingError as error:
        raise ValidationError({"detail": str(error)}) from None


_BUDGET_SCHEMA = extend_schema(parameters=[TENANT_HEADER_PARAMETER])


@extend_schema_view(
    list=_BUDGET_SCHEMA,
    retrieve=_BUDGET_SCHEMA,
    create=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER],
        request=BudgetCreateSerializer,
        responses={201: BudgetSerializer},
    ),
    partial_update=extend_schema(
        parameters=[TENANT_HEADER_PARAMETER], request=BudgetSerializer, responses=BudgetSerializer
    ),
    destroy=extend_schema(parameters=[TENANT_HEADER_PARAMETER], responses={204: None}),
)
class BudgetViewSet(mixins.ListModelMixin, ManagementView):
    """The caller's tenant's budgets: one tenant-wide and at most one per key.

    Viewers read; owners and admins write. Each budget carries the current period's spend.
    """

    serializer_class = BudgetSerializer
    lookup_value_regex = "[0-9]+"
    clock: Callable[[], datetime] = staticmethod(timezone.now)

    def get_queryset(self) -> QuerySet[Budget]:
        if self.is_schema_view():
            return Budget.objects.none()
        return Budget.objects.filter(tenant=self.scope.tenant).select_related("api_key")

    def paginate_queryset(self, queryset: QuerySet[Budget]) -> list[Budget] | None:
        page = super().paginate_queryset(queryset)
        return None if page is None else self._with_spend(page)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(BudgetSerializer(self._with_spend([self.get_object()])[0]).data)

    def _with_spend(self, budgets: list[Budget]) -> list[Budget]:
        """Set spent_usd and the period's bounds on each budget: one ledger sum per budget,
        each an index range scan (usage_key_started / usage_tenant_started)."""
        now = self.clock()
        for budget in budgets:
            budget.period_start, budget.period_end = budget.bounds(now)
            budget.spent_usd = selectors.spent_in_period(
                tenant_id=budget.tenant_id,
                api_key_id=budget.api_key_id,
                period_start=budget.period_start,
                period_end=budget.period_end,
            )
        return budgets

    def _fresh(self, budget_id: int) -> Budget:
        budget = self.get_queryset().get(pk=budget_id)
        return self._with_spend([budget])[0]

    def create(self, request: Request) -> Response:
        incoming = BudgetCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        tenant = self.scope.tenant
        api_key_id = None
        if data["api_key"] is not None:
            api_key = tenant_selectors.api_key_get(tenant=tenant, key_public_id=data["api_key"])
            if api_key is None:  # another tenant's key looks exactly like a missing one
                raise ValidationError({"api_key": "No such key."})
            api_key_id = api_key.pk
        if Budget.objects.filter(tenant=tenant, api_key_id=api_key_id).exists():
            raise ValidationError(
                {"api_key": "This already has a budget: change it with PATCH budgets/{id}/."}
            )
        budget = _billing_call(
            lambda: services.budget_set(
                tenant_id=tenant.pk,
                api_key_id=api_key_id,
                limit_usd=data["limit_usd"],
                period=data.get("period", Budget.Period.MONTHLY),
                soft_limit_pct=data.get("soft_limit_pct", 80),
                alert_webhook_url=data.get("alert_webhook_url", ""),
            )
        )
        return Response(
            BudgetSerializer(self._fresh(budget.pk)).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request: Request, pk: str) -> Response:
        budget = self.get_object()
        incoming = BudgetSerializer(budget, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        updated = _billing_call(
            lambda: services.budget_set(
                tenant_id=budget.tenant_id,
                api_key_id=budget.api_key_id,
                limit_usd=data.get("limit_usd", budget.limit_usd),
                period=data.get("period", budget.period),
                soft_limit_pct=data.get("soft_limit_pct", budget.soft_limit_pct),
                alert_webhook_url=data.get("alert_webhook_url", budget.alert_webhook_url),
            )
        )
        return Response(BudgetSerializer(self._fresh(updated.pk)).data)

    def destroy(self, request: Request, pk: str) -> Response:
        budget = self.get_object()
        services.budget_delete(tenant_id=self.scope.tenant.pk, budget_id=budget.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
