"""/v1/siem: the org's own SIEM destination (GET/PUT/DELETE) and POST /v1/siem/retry. Thin over services."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.openapi import errors
from keyward.core.validation import validated
from keyward.siem import services
from keyward.siem.serializers import SiemDestinationSerializer, SiemStatusSerializer
from keyward.tenancy.scoping import OrgScopedViewSet

NO_DESTINATION = errors("no_siem_destination")


class SiemViewSet(OrgScopedViewSet):
    """Admins watch delivery and retry it; only owners repoint or stop the stream."""

    action_roles = {"show": Role.ADMIN, "configure": Role.OWNER, "remove": Role.OWNER, "retry": Role.ADMIN}
    serializer_class = SiemStatusSerializer

    @extend_schema(operation_id="siem_show", responses={200: SiemStatusSerializer, 404: NO_DESTINATION})
    def show(self, request):
        """The org's SIEM destination (host only) and how delivery stands (admin)."""
        return Response(SiemStatusSerializer(services.status(self.org)).data)

    @extend_schema(
        operation_id="siem_configure", request=SiemDestinationSerializer, responses={200: SiemStatusSerializer}
    )
    def configure(self, request):
        """Stream the org's audit events to `url`, signed with `secret` (owner; audited)."""
        data = validated(SiemDestinationSerializer, request.data)
        state = services.set_destination(
            self.org, actor=request.user, audit_context=AuditContext.from_request(request), **data
        )
        return Response(SiemStatusSerializer(state).data)

    @extend_schema(operation_id="siem_remove", request=None, responses={204: None, 404: NO_DESTINATION})
    def remove(self, request):
        """Stop the org's stream and forget its position (owner; audited)."""
        services.remove_destination(self.org, actor=request.user, audit_context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="siem_retry",
        request=None,
        responses={200: SiemStatusSerializer, 404: NO_DESTINATION, 409: errors("siem_delivery_ok")},
    )
    def retry(self, request):
        """Un-park delivery, or cut a backoff short; it resumes where it stood (admin; audited)."""
        state = services.retry_delivery(self.org, actor=request.user, audit_context=AuditContext.from_request(request))
        return Response(SiemStatusSerializer(state).data)


siem_destination_view = SiemViewSet.as_view({"get": "show", "put": "configure", "delete": "remove"})
siem_retry_view = SiemViewSet.as_view({"post": "retry"})
