"""Request validation and response shapes for providers (/v1/secrets).

`secret` exists only on request serializers, write-only, and is handed straight to the service;
responses carry the secret's metadata (version, fingerprint, rotated_at), never its value.
"""

import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keyward import scopes as scope_rules
from keyward.providers.models import PROVIDER_NAME_PATTERN, Provider, ProviderKind

MAX_CATALOGUE_SCOPES = 200
_PROVIDER_NAME = re.compile(PROVIDER_NAME_PATTERN)
VALUE_HELP = "Write-only. A string, or for `static` providers an object mapping each scope to its value."


class StrictFieldsMixin:
    """Refuse fields a serializer does not take, so a typo (`secrets`, `max_ttl`) is never silently dropped.

    `refused_fields` maps a field name to a more helpful message than "Unknown field."
    """

    refused_fields: dict[str, str] = {}

    def to_internal_value(self, data) -> dict:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {field: [self.refused_fields.get(field, "Unknown field.")] for field in unknown}
                )
        return super().to_internal_value(data)


class ScopePatternField(serializers.CharField):
    """A scope or scope pattern (`charges:read`, `charges:*`, `*`), as agent grants and catalogues use."""

    def to_internal_value(self, data) -> str:
        pattern = super().to_internal_value(data)
        if not scope_rules.is_valid_pattern(pattern):
            raise serializers.ValidationError(
                f"{pattern[:50]!r} is not a scope pattern (a scope such as charges:read, a prefix such as "
                "charges:*, or *)."
            )
        return pattern


class ProviderFieldsSerializer(serializers.Serializer):
    """The fields an admin may set on create and change later."""

    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    config = serializers.JSONField(required=False, help_text="Public, kind-specific configuration (an object).")
    scopes = serializers.ListField(
        child=ScopePatternField(max_length=scope_rules.MAX_SCOPE_LENGTH),
        required=False,
        max_length=MAX_CATALOGUE_SCOPES,
    )
    max_ttl_seconds = serializers.IntegerField(required=False, min_value=60)

    def validate_max_ttl_seconds(self, value: int) -> int:
        if value > settings.KEYWARD_MAX_CREDENTIAL_TTL:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.KEYWARD_MAX_CREDENTIAL_TTL} "
                "(KEYWARD_MAX_CREDENTIAL_TTL)."
            )
        return value


class ProviderCreateSerializer(StrictFieldsMixin, ProviderFieldsSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    secret = serializers.JSONField(required=False, write_only=True, help_text=VALUE_HELP)

    def validate_name(self, value: str) -> str:
        if not _PROVIDER_NAME.match(value):
            raise serializers.ValidationError(
                "Provider names are 1 to 100 lowercase letters, digits, '.', '_' and '-', starting with a letter "
                "or digit."
            )
        return value


class ProviderUpdateSerializer(StrictFieldsMixin, ProviderFieldsSerializer):
    """PATCH: name and kind are fixed for life; the secret changes only through rotate."""

    refused_fields = {
        "name": "The name cannot change; create a new provider instead.",
        "kind": "The kind cannot change; create a new provider instead.",
        "secret": "Use POST /v1/secrets/<name>/rotate to change the secret.",
    }


class RotateSecretSerializer(StrictFieldsMixin, serializers.Serializer):
    secret = serializers.JSONField(write_only=True, help_text=VALUE_HELP)
    config = serializers.JSONField(required=False, help_text="A new config to store together with this secret.")


class SecretMetadataSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    fingerprint = serializers.CharField(help_text="First 16 hex characters of SHA-256 of the secret.")
    rotated_at = serializers.DateTimeField()


class ProviderSerializer(serializers.ModelSerializer):
    secret = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "description",
            "config",
            "scopes",
            "max_ttl_seconds",
            "secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(SecretMetadataSerializer(allow_null=True))
    def get_secret(self, provider: Provider) -> dict | None:
        if not provider.secret_version:
            return None
        fingerprint = getattr(provider, "current_fingerprint", None)
        if fingerprint is None:
            fingerprint = (
                provider.secrets.filter(version=provider.secret_version).values_list("fingerprint", flat=True).first()
            )
        return {"version": provider.secret_version, "fingerprint": fingerprint, "rotated_at": provider.rotated_at}
