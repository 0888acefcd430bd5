"""Billing routes, mounted under /api/v1/ by aicc_site.urls next to tenants.urls."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from billing.api import BudgetViewSet, UsageReportView

router = SimpleRouter()
router.register("budgets", BudgetViewSet, basename="budget")

urlpatterns = [
    path("usage", UsageReportView.as_view(), name="billing-usage"),
    *router.urls,
]
