from django.urls import path

from billing.api import UsageReportView

urlpatterns = [
    path("usage", UsageReportView.as_view(), name="billing-usage"),
]
