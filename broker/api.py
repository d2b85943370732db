"""Agent-facing HTTP endpoints. Thin: call one service, render."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from keyward.crypto import signing

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
