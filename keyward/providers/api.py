"""Providers, the seed's "secrets" (/v1/secrets, admin), addressed by provider name. Metadata only."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from keyward.accounts.models import Role
from keyward.audit.writer import AuditContext
from keyward.core.openapi import errors
from keyward.core.validation import validated
from keyward.providers import services
from keyward.providers.models import PROVIDER_NAME_PATTERN, Provider
from keyward.providers.serializers import (
    ProviderCreateSerializer,
    ProviderSerializer,
    ProviderUpdateSerializer,
    RotateSecretSerializer,
)
from keyward.tenancy.scoping import OrgScopedViewSet


class ProviderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    queryset = services.providers_with_secret_metadata(Provider.objects.all())
    serializer_class = ProviderSerializer
    required_role = Role.ADMIN
    lookup_field = "name"
    # Only a possible provider name reaches the database (a NUL in a lookup fails the query on PostgreSQL).
    lookup_value_regex = PROVIDER_NAME_PATTERN.removeprefix("^").removesuffix("$")
    http_method_names = ["get", "post", "patch", "head", "options"]

    def _render(self, provider: Provider, answer: int = status.HTTP_200_OK) -> Response:
        """Re-read through the scoped, annotated queryset, so every answer has the same shape."""
        return Response(ProviderSerializer(self.get_queryset().get(pk=provider.pk)).data, status=answer)

    @extend_schema(
        request=ProviderCreateSerializer, responses={201: ProviderSerializer, 409: errors("provider_exists")}
    )
    def create(self, request, *args, **kwargs):
        provider = services.create_provider(
            org=self.org,
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(ProviderCreateSerializer, request.data),
        )
        return self._render(provider, status.HTTP_201_CREATED)

    @extend_schema(
        request=ProviderUpdateSerializer, responses={200: ProviderSerializer, 409: errors("secret_required")}
    )
    def partial_update(self, request, *args, **kwargs):
        provider = services.update_provider(
            self.get_object(),
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(ProviderUpdateSerializer, request.data),
        )
        return self._render(provider)

    @extend_schema(request=RotateSecretSerializer, responses={200: ProviderSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request, name=None):
        provider = services.rotate_secret(
            self.get_object(),
            actor=request.user,
            audit_context=AuditContext.from_request(request),
            **validated(RotateSecretSerializer, request.data),
        )
        return self._render(provider)
