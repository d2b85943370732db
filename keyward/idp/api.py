"""IdP connectors (/v1/idps, admin) and tenant SSO routing (/auth/tenant, public)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.openapi import errors
from keyward.core.validation import validated
from keyward.idp import services
from keyward.idp.models import IdpConnector
from keyward.idp.serializers import (
    DOMAIN_PATTERN,
    DomainPathSerializer,
    EmailDomainClaimSerializer,
    IdpConnectorSerializer,
    IdpConnectorWriteSerializer,
    TenantQuerySerializer,
    TenantSerializer,
)
from keyward.tenancy.scoping import OrgScopedViewSet


class OrgRateThrottle(ScopedRateThrottle):
    """A scoped rate counted per org: all of an org's admins share one budget."""

    def get_cache_key(self, request, view) -> str | None:
        org_id = getattr(request.user, "org_id", None)
        if org_id is None:  # no org: the org-scoped view refuses the caller anyway
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"org-{org_id}"}


class IdpConnectorViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    OrgScopedViewSet,
):
    queryset = IdpConnector.objects.prefetch_related("email_domains")
    serializer_class = IdpConnectorSerializer
    required_role = Role.ADMIN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # Writes that make keyward fetch a URL or query DNS are rate-limited per org (KEYWARD_IDP_WRITE_RATE).
    throttle_scope = "idp_write"
    throttled_actions = frozenset({"create", "partial_update", "verify_domain"})

    def get_throttles(self):
        return [OrgRateThrottle()] if self.action in self.throttled_actions else []

    @extend_schema(
        request=IdpConnectorWriteSerializer,
        responses={201: IdpConnectorSerializer, 409: errors("issuer_taken", "idp_conflict", "email_domain_taken")},
    )
    def create(self, request, *args, **kwargs):
        connector = services.create_connector(
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(IdpConnectorWriteSerializer, request.data),
        )
        return Response(IdpConnectorSerializer(connector).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=IdpConnectorWriteSerializer,
        responses={
            200: IdpConnectorSerializer,
            409: errors("issuer_taken", "idp_conflict", "email_domain_taken", "dev_idp_read_only"),
        },
    )
    def partial_update(self, request, *args, **kwargs):
        connector = services.update_connector(
            self.get_object(),
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(IdpConnectorWriteSerializer, request.data, partial=True),
        )
        return Response(IdpConnectorSerializer(connector).data)

    @extend_schema(responses={409: errors("dev_idp_read_only")})
    def destroy(self, request, *args, **kwargs):
        services.delete_connector(
            self.get_object(), org=self.org, actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses={
            200: EmailDomainClaimSerializer,
            400: errors("invalid_request"),
            404: errors("domain_not_claimed"),
            409: errors("domain_not_verified", "email_domain_taken"),
        },
        parameters=[OpenApiParameter("domain", str, OpenApiParameter.PATH, pattern=DOMAIN_PATTERN)],
    )
    @action(detail=True, methods=["post"], url_path=r"domains/(?P<domain>[^/]+)/verify")
    def verify_domain(self, request, pk=None, domain=None):
        """Check the domain's DNS TXT record and, when it is published, let the domain route sign-ins."""
        claim = services.verify_domain(
            self.get_object(),
            validated(DomainPathSerializer, {"domain": domain})["domain"],
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        return Response(EmailDomainClaimSerializer(claim).data)


class TenantView(APIView):
    """Home-realm discovery: which org and IdP an email's (verified) domain signs in with."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "tenant"

    @extend_schema(parameters=[TenantQuerySerializer], responses={200: TenantSerializer, 404: errors("no_tenant")})
    def get(self, request):
        email = validated(TenantQuerySerializer, request.query_params)["email"]
        return Response(services.tenant_for_email(email))
