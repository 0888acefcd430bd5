from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway.health_views import health_detailed

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/detailed", health_detailed, name="health-detailed"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
