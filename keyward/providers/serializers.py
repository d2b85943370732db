"""Request validation and response shapes for providers (/v1/secrets).

`secret` exists only on request serializers, write-only, and is handed straight to the service;
responses carry the secret's metadata (version, fingerprint, rotated_at), never its value.
"""

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keyward import scopes as scope_rules
from keyward.core.validation import FullMatch, StrictSerializer, ttl_seconds_field
from keyward.providers.models import PROVIDER_NAME_PATTERN, Provider, ProviderKind

MAX_CATALOGUE_SCOPES = 200
_PROVIDER_NAME = re.compile(PROVIDER_NAME_PATTERN)
VALUE_HELP = "Write-only. A string, or for `static` providers an object mapping each scope to its value."


class ScopePatternField(serializers.CharField):
    """A scope or scope pattern (`charges:read`, `charges:*`, `*`), as agent grants and catalogues use."""

    def __init__(self, **kwargs):
        message = "Not a scope pattern (a scope such as charges:read, a prefix such as charges:*, or *)."
        super().__init__(validators=[FullMatch(scope_rules.SCOPE_PATTERN_PATTERN, message)], **kwargs)


@extend_schema_field({"type": "object", "additionalProperties": True})
class ConfigField(serializers.JSONField):
    """A kind's configuration: a JSON object (providers.kinds checks its keys and values per kind)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Expected an object.")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
        ],
        "writeOnly": True,
        "description": VALUE_HELP,
    }
)
class SecretValueField(serializers.JSONField):
    """A secret as sent: a string, or for `static` providers an object of scope -> string.

    providers.kinds checks it per kind and refuses it as `invalid_secret`, whatever is wrong with it.
    """

    def __init__(self, **kwargs):
        super().__init__(write_only=True, help_text=VALUE_HELP, **kwargs)


class ProviderFieldsSerializer(StrictSerializer):
    """The fields an admin may set on create and change later."""

    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    config = ConfigField(required=False, help_text="Public, kind-specific configuration (an object).")
    scopes = serializers.ListField(
        child=ScopePatternField(max_length=scope_rules.MAX_SCOPE_LENGTH),
        required=False,
        max_length=MAX_CATALOGUE_SCOPES,
    )
    max_ttl_seconds = ttl_seconds_field(required=False)


class ProviderCreateSerializer(ProviderFieldsSerializer):
    name = serializers.CharField(
        max_length=100,
        validators=[
            FullMatch(
                PROVIDER_NAME_PATTERN,
                "Provider names are 1 to 100 lowercase letters, digits, '.', '_' and '-', starting with a letter "
                "or digit.",
            )
        ],
    )
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    secret = SecretValueField(required=False)


class ProviderUpdateSerializer(ProviderFieldsSerializer):
    """PATCH: name and kind are fixed for life; the secret changes only through rotate."""

    refused_fields = {
        "name": "The name cannot change; create a new provider instead.",
        "kind": "The kind cannot change; create a new provider instead.",
        "secret": "Use POST /v1/secrets/<name>/rotate to change the secret.",
    }


class RotateSecretSerializer(StrictSerializer):
    secret = SecretValueField()
    config = ConfigField(required=False, help_text="A new config to store together with this secret.")


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
