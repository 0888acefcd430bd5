"""Management API routes, mounted under /api/v1/ by aicc_site.urls."""

from rest_framework.routers import SimpleRouter

from tenants.api.views import APIKeyViewSet, AuditViewSet, MemberViewSet, TenantViewSet

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("members", MemberViewSet, basename="member")
router.register("keys", APIKeyViewSet, basename="api-key")
router.register("audit", AuditViewSet, basename="audit")

urlpatterns = router.urls
