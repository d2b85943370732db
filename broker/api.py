"""Broker HTTP endpoints: the agent-facing credential API, JWKS, introspection, and the issued registry.

Thin: parse, call one service, render. Business rules live in broker/pipeline.py and broker/registry.py.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import limits, parsing, pipeline, registry
from broker.models import IntrospectionKey, IssuedCredential
from broker.schema import TOKEN_HEADER_SCHEMA, CredentialsSchema
from broker.serializers import (
    CredentialRequestSerializer,
    IntrospectionKeyCreateSerializer,
    IntrospectionKeySerializer,
    IntrospectRequestSerializer,
    IssuedAnswerSerializer,
    IssuedCredentialSerializer,
    IssuedFilterSerializer,
    PendingApprovalAnswerSerializer,
    RevokeSerializer,
)
from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.openapi import errors
from keyward.core.validation import validated
from keyward.crypto import signing
from keyward.tenancy.scoping import OrgScopedViewSet

JWKS_CACHE_CONTROL = "public, max-age=300"

_JWKS_SCHEMA = inline_serializer(
    "Jwks",
    fields={
        "keys": inline_serializer(
            "PublicJwk",
            fields={name: serializers.CharField() for name in ("kid", "kty", "crv", "x", "y", "use", "alg")},
            many=True,
        )
    },
)


class JwksView(APIView):
    """keyward's public signing keys, so anyone can verify the tokens keyward signs without calling it."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(auth=[], responses={200: _JWKS_SCHEMA})
    def get(self, request):
        response = Response(signing.jwks())
        # Short: retiring keys stay published long after their last use, and verifiers refetch on an unknown kid.
        response["Cache-Control"] = JWKS_CACHE_CONTROL
        return response


class CredentialsView(APIView):
    """POST /v1/credentials: an agent, acting for a human, asks for a short-lived credential."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    parser_classes: list = []  # the pipeline reads and validates the raw body itself

    schema = CredentialsSchema()

    @extend_schema(
        request={"application/json": CredentialRequestSerializer},
        examples=[
            OpenApiExample(
                "one scope for five minutes",
                value={"provider": "stripe", "scope": "charges:read", "ttl": "5m"},
                request_only=True,
            )
        ],
        parameters=[
            OpenApiParameter(
                "X-Keyward-Agent",
                {"type": "string", "maxLength": 100, "pattern": parsing.AGENT_HEADER_PATTERN},
                OpenApiParameter.HEADER,
                required=True,
                description="The asking agent's name.",
                examples=[OpenApiExample("agent", value="invoice-bot")],
            ),
            OpenApiParameter(
                "X-Keyward-Environment",
                {"type": "string", "maxLength": 64, "pattern": parsing.ENVIRONMENT_PATTERN},
                OpenApiParameter.HEADER,
                description=f"Default {parsing.DEFAULT_ENVIRONMENT}.",
            ),
            OpenApiParameter(
                "X-Keyward-Agent-Assertion",
                TOKEN_HEADER_SCHEMA,
                OpenApiParameter.HEADER,
                description="An attestation JWT, for agents that require attestation.",
            ),
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "pattern": parsing.IDEMPOTENCY_KEY_PATTERN},
                OpenApiParameter.HEADER,
                description="1-200 printable ASCII characters; a retry with the same key gets the first answer.",
            ),
        ],
        responses={
            200: OpenApiResponse(IssuedAnswerSerializer, description="Issued."),
            202: OpenApiResponse(PendingApprovalAnswerSerializer, description="Parked until a human decides."),
            401: errors("invalid_user_token", "invalid_delegation"),
            403: errors(
                "agent_revoked",
                "scope_not_allowed",
                "policy_denied",
                "agent_attestation_required",
                "delegation_too_deep",
                "approval_denied",
            ),
            404: errors("unknown_agent", "unknown_provider"),
            409: errors("idempotency_key_reused", "provider_secret_missing"),
            429: errors("rate_limited", "too_many_outstanding"),
            502: errors("native_mint_failed"),
            503: errors("provider_secret_unreadable"),
        },
    )
    def post(self, request):
        answer = pipeline.handle(request._request)
        response = Response(answer.body, status=answer.status)
        response["Cache-Control"] = "no-store"
        return response


class IssuedCredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """The org's issued-credential records (never the credentials); revoke cascades down the chain."""

    queryset = IssuedCredential.objects.select_related("agent", "provider", "parent")
    serializer_class = IssuedCredentialSerializer
    required_role = Role.ADMIN
    lookup_field = "jti"
    lookup_value_regex = "[0-9a-f]{1,64}"
    filter_params = {"agent": "agent__name", "provider": "provider__name", "end_user": "end_user"}

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "now": timezone.now()}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        filters = validated(IssuedFilterSerializer, self.request.query_params)
        for param, field in self.filter_params.items():
            if param in filters:
                queryset = queryset.filter(**{field: filters[param]})
        now = timezone.now()
        state = filters.get("status")
        if state == "active":
            queryset = queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        elif state == "revoked":
            queryset = queryset.filter(revoked_at__isnull=False)
        elif state == "expired":
            queryset = queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset

    @extend_schema(parameters=[IssuedFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=RevokeSerializer,
        responses={
            200: inline_serializer("Revoked", fields={"revoked": serializers.ListField(child=serializers.CharField())})
        },
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, jti=None):
        reason = validated(RevokeSerializer, request.data)["reason"]
        revoked = registry.revoke(
            self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request), reason=reason
        )
        return Response({"revoked": revoked})


class IntrospectionKeyViewSet(
    mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet
):
    """Keys resource servers use for POST /v1/introspect. The key is shown once, at creation."""

    queryset = IntrospectionKey.objects.all()
    serializer_class = IntrospectionKeySerializer
    required_role = Role.ADMIN

    @extend_schema(
        request=IntrospectionKeyCreateSerializer,
        responses={
            201: inline_serializer(
                "NewIntrospectionKey",
                fields={"key": serializers.CharField(), "introspection_key": IntrospectionKeySerializer()},
            )
        },
    )
    def create(self, request, *args, **kwargs):
        created = registry.create_introspection_key(
            self.org,
            name=validated(IntrospectionKeyCreateSerializer, request.data)["name"],
            actor=request.user,
            audit_context=AuditContext.from_request(request),
        )
        return Response(
            {"key": created.key, "introspection_key": IntrospectionKeySerializer(created.record).data},
            status=status.HTTP_201_CREATED,
        )

    def destroy(self, request, *args, **kwargs):
        registry.revoke_introspection_key(
            self.get_object(), actor=request.user, audit_context=AuditContext.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class IntrospectionKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer kw_intro_…`: a resource server, acting for one org."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <introspection key>'.")
        record = registry.resolve_introspection_key(parts[1].decode("ascii", errors="replace"))
        if record is None:
            raise AuthenticationFailed("The introspection key is invalid or revoked.")
        return None, record

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="keyward-introspection"'


class HasIntrospectionKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, IntrospectionKey)


class IntrospectView(APIView):
    """RFC 7662-shaped introspection of keyward-signed credentials, for resource servers."""

    authentication_classes = [IntrospectionKeyAuthentication]
    permission_classes = [HasIntrospectionKey]

    @extend_schema(
        request=IntrospectRequestSerializer,
        responses={
            200: inline_serializer("Introspection", fields={"active": serializers.BooleanField()}),
            429: errors("rate_limited"),
        },
    )
    def post(self, request):
        limits.take_introspection(request.auth)
        token = validated(IntrospectRequestSerializer, request.data)["token"]
        response = Response(registry.introspect(request.auth.org, token))
        response["Cache-Control"] = "no-store"
        return response
