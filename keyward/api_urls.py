"""The admin REST API under /v1 (org-scoped, role-gated)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from keyward.accounts.api import AdminViewSet
from keyward.agents.api import AgentViewSet
from keyward.approvals.api import ApprovalViewSet
from keyward.audit.api import AuditExportDownloadView, AuditExportViewSet, AuditViewSet
from keyward.idp.api import IdpConnectorViewSet
from keyward.orgs.api import OrgSettingsView
from keyward.policies.api import PolicyViewSet
from keyward.providers.api import ProviderViewSet
from keyward.siem.api import siem_destination_view, siem_retry_view

router = SimpleRouter(trailing_slash=False)
router.register("admins", AdminViewSet, basename="admins")
router.register("idps", IdpConnectorViewSet, basename="idps")
router.register("audit/exports", AuditExportViewSet, basename="audit-exports")
router.register("audit", AuditViewSet, basename="audit")
router.register("agents", AgentViewSet, basename="agents")
router.register("secrets", ProviderViewSet, basename="secrets")
router.register("policies", PolicyViewSet, basename="policies")
router.register("approvals", ApprovalViewSet, basename="approvals")

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(permission_classes=[]), name="openapi-schema"),
    path("siem", siem_destination_view, name="siem"),
    path("siem/retry", siem_retry_view, name="siem-retry"),
    path("org", OrgSettingsView.as_view(), name="org-settings"),
    path("audit/exports/<str:export_id>/download", AuditExportDownloadView.as_view(), name="audit-export-download"),
    *router.urls,
]
