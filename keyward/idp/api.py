"""IdP connectors (/v1/idps, admin) and tenant SSO routing (/auth/tenant, public)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.exceptions import NotFound
from keyward.idp import services
from keyward.idp.models import IdpConnector
from keyward.idp.serializers import IdpConnectorSerializer
from keyward.tenancy.scoping import OrgScopedViewSet


class IdpConnectorViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    queryset = IdpConnector.objects.prefetch_related("email_domains")
    serializer_class = IdpConnectorSerializer
    required_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        connector = services.create_connector(
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **serializer.validated_data,
        )
        return Response(self.get_serializer(connector).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        connector = self.get_object()
        serializer = self.get_serializer(connector, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        connector = services.update_connector(
            connector, actor=request.user, audit_context=AuditContext.from_request(request), **serializer.validated_data
        )
        self.ensure_in_org(connector)
        return Response(self.get_serializer(connector).data)

    def destroy(self, request, *args, **kwargs):
        services.delete_connector(
            self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantSerializer(serializers.Serializer):
    org = serializers.DictField()
    idp = serializers.DictField()


class TenantView(APIView):
    """Home-realm discovery: which org and IdP an email's domain signs in with."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "tenant"

    @extend_schema(parameters=[OpenApiParameter("email", str, required=True)], responses={200: TenantSerializer})
    def get(self, request):
        email = request.query_params.get("email", "")
        if "@" not in email or len(email) > 254:
            raise serializers.ValidationError({"email": ["Give an email address."]})
        connector = services.connector_for_email(email)
        if connector is None:
            raise NotFound("No org routes this email domain to an identity provider.", code="no_tenant")
        return Response(
            {
                "org": {"slug": connector.org.slug, "name": connector.org.name},
                "idp": {
                    "name": connector.name,
                    "kind": connector.kind,
                    "issuer": connector.issuer,
                    "oidc_client_id": connector.oidc_client_id,
                },
            }
        )
