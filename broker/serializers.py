import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from broker.models import IntrospectionKey, IssuedCredential
from keyward import scopes as scope_rules
from keyward.core.validation import FullMatch, StrictSerializer
from keyward.providers.models import PROVIDER_NAME_PATTERN


class IssuedCredentialSerializer(serializers.ModelSerializer):
    """The record of a hand-out; never the credential."""

    agent = serializers.CharField(source="agent.name")
    provider = serializers.CharField(source="provider.name")
    parent_jti = serializers.CharField(source="parent.jti", default=None, allow_null=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = IssuedCredential
        fields = [
            "jti",
            "agent",
            "provider",
            "end_user",
            "scope",
            "environment",
            "token_type",
            "issued_at",
            "expires_at",
            "status",
            "parent_jti",
            "depth",
            "chain",
            "approval_id",
            "policy_id",
            "native",
            "revocable_upstream",
            "revoked_at",
            "revoked_reason",
        ]
        read_only_fields = fields

    def get_status(self, record: IssuedCredential) -> str:
        if record.revoked_at is not None:
            return "revoked"
        return "expired" if record.expires_at <= self.context["now"] else "active"


class IssuedFilterSerializer(StrictSerializer):
    agent = serializers.CharField(max_length=100, required=False)
    provider = serializers.CharField(max_length=100, required=False)
    end_user = serializers.CharField(max_length=255, required=False)
    status = serializers.ChoiceField(choices=["active", "revoked", "expired"], required=False)


class RevokeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class IntrospectionKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = IntrospectionKey
        fields = ["id", "name", "prefix", "created_at", "created_by", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "created_by", "revoked_at"]


class IntrospectionKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)


class IntrospectRequestSerializer(StrictSerializer):
    token = serializers.CharField(max_length=16384, trim_whitespace=True)


DEFAULT_TTL_SECONDS = 900
MAX_TTL_NUMBER = 999_999_999  # nine digits: any larger TTL is clamped anyway
TTL_PATTERN = r"^[1-9][0-9]{0,8}[smh]?$"
_TTL = re.compile(r"([1-9][0-9]{0,8})([smh]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_ttl(value) -> int:
    """`"90s"`, `"5m"`, `"1h"`, `"300"` or `300` -> seconds (> 0). ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TTL_NUMBER:
        return value
    if isinstance(value, str) and (match := _TTL.fullmatch(value)):
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f'ttl must look like "90s", "5m", "1h" or a number of seconds from 1 to {MAX_TTL_NUMBER}')


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_TTL_NUMBER},
            {"type": "string", "pattern": TTL_PATTERN},
        ],
        "nullable": True,
        "description": f'"90s", "5m", "1h" or a number of seconds (default {DEFAULT_TTL_SECONDS}); it is clamped '
        "to the agent's, provider's, org's and platform's limits.",
    }
)
class TtlField(serializers.Field):
    def to_internal_value(self, data) -> int:
        try:
            return parse_ttl(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class RequestedScopesField(serializers.CharField):
    """One to 20 scopes separated by whitespace -> the distinct scopes, in order."""

    def __init__(self, **kwargs):
        super().__init__(
            max_length=scope_rules.MAX_REQUESTED_SCOPES_LENGTH,
            validators=[FullMatch(scope_rules.REQUESTED_SCOPES_PATTERN)],
            help_text="One or more scopes separated by spaces (at most 20).",
            **kwargs,
        )

    def run_validation(self, data=serializers.empty) -> list[str]:
        text = super().run_validation(data)  # the string, checked against the pattern the schema states
        try:
            return scope_rules.parse_scopes(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class CredentialRequestSerializer(StrictSerializer):
    """The body of POST /v1/credentials (broker/parsing.py turns its errors into the broker's 400)."""

    provider = serializers.CharField(max_length=100, validators=[FullMatch(PROVIDER_NAME_PATTERN)])
    scope = RequestedScopesField()
    ttl = TtlField(required=False, allow_null=True)


class DelegationAnswerSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The delegation token: a sub-agent sends it as X-Keyward-Delegation.")
    depth = serializers.IntegerField(help_text="Agents in the chain, the root counting as 1.")
    chain = serializers.ListField(child=serializers.CharField(), help_text="Agent names, root first.")


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}],
        "description": "The credential: a token, or for aws_sts {access_key_id, secret_access_key, session_token, "
        "expiration}.",
    }
)
class CredentialValueField(serializers.JSONField):
    pass


class IssuedAnswerSerializer(serializers.Serializer):
    """POST /v1/credentials: 200."""

    credential = CredentialValueField()
    token_type = serializers.CharField()
    provider = serializers.CharField()
    scope = serializers.CharField()
    expires_at = serializers.DateTimeField()
    delegation = DelegationAnswerSerializer()
    credential_id = serializers.CharField()
    ttl_clamped_up_to = serializers.IntegerField(
        required=False, help_text="Present when the provider could not go as short as the TTL (aws_sts)."
    )


class PendingApprovalAnswerSerializer(serializers.Serializer):
    """POST /v1/credentials: 202, parked until a human decides."""

    status = serializers.ChoiceField(choices=["pending_approval"])
    approval_id = serializers.CharField()
