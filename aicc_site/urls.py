from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django_ratelimit.decorators import ratelimit
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway.health_views import health_detailed

# Password guessing on the admin login: a 403 after AICC_LOGIN_RATE attempts per client address.
admin.site.login = ratelimit(  # type: ignore[method-assign]
    key="ip", rate=settings.AICC_LOGIN_RATE, method="POST", block=True
)(admin.site.login)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/detailed", health_detailed, name="health-detailed"),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
