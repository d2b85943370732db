"""Request validation and response shapes for agents. Field shapes here; cross-field rules in services.py."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keyward.agents.models import Agent, AgentStatus
from keyward.core.ratelimit import MAX_BURST, MAX_OUTSTANDING, MAX_RATE_PER_MINUTE
from keyward.core.validation import FullMatch, StrictSerializer, ttl_seconds_field
from keyward.jose.keys import SUPPORTED_ALGORITHMS
from keyward.providers.models import PROVIDER_NAME_PATTERN
from keyward.providers.serializers import ScopePatternField
from keyward.scopes import MAX_SCOPE_LENGTH

MAX_GRANTS = 100
MAX_SCOPES_PER_GRANT = 50
MAX_ENVIRONMENTS_PER_GRANT = 20
MAX_REQUIRED_CLAIMS = 20
MAX_CLAIM_NAME_LENGTH = 100
MAX_CLAIM_VALUE_LENGTH = 500
ANY_ENVIRONMENT = "*"
ENVIRONMENT_PATTERN = r"^(?:\*|[a-z0-9][a-z0-9_-]{0,63})$"
# An agent's name as registration takes it: the name grammar, but not all digits (that reads as an id).
REGISTRABLE_NAME_PATTERN = r"^(?:[a-z][a-z0-9._-]*|[0-9]+[a-z._-][a-z0-9._-]*)$"
# Claims that attestation checks through their own fields (iss, aud, sub) or that change on every token.
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def environment_field() -> serializers.CharField:
    message = "Not an environment name (lowercase letters, digits, _ and -, at most 64 characters), or * for any."
    return serializers.CharField(max_length=64, validators=[FullMatch(ENVIRONMENT_PATTERN, message)])


class GrantSerializer(StrictSerializer):
    provider = serializers.CharField(
        max_length=100,
        validators=[
            FullMatch(PROVIDER_NAME_PATTERN, "Not a provider name (lowercase letters, digits, '.', '_' and '-').")
        ],
    )
    scopes = serializers.ListField(
        child=ScopePatternField(max_length=MAX_SCOPE_LENGTH), min_length=1, max_length=MAX_SCOPES_PER_GRANT
    )
    environments = serializers.ListField(child=environment_field(), min_length=1, max_length=MAX_ENVIRONMENTS_PER_GRANT)

    def to_internal_value(self, data) -> dict:
        grant = super().to_internal_value(data)
        # A fixed key order, so the stored JSON (and "changed" detection) does not depend on the client.
        return {
            "provider": grant["provider"],
            "scopes": _unique(grant["scopes"]),
            "environments": _unique(grant["environments"]),
        }


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_REQUIRED_CLAIMS,
        "additionalProperties": {
            "oneOf": [
                {"type": "string", "maxLength": MAX_CLAIM_VALUE_LENGTH},
                {"type": "number"},
                {"type": "boolean"},
            ]
        },
        "description": "Claim name -> the exact value the attestation token must carry (not iss, sub, aud, exp, "
        "nbf, iat or jti).",
    }
)
class RequiredClaimsField(serializers.DictField):
    """A flat object of claim name -> string, number or boolean that the attestation token must carry."""

    def to_internal_value(self, data) -> dict:
        claims = super().to_internal_value(data)
        if len(claims) > MAX_REQUIRED_CLAIMS:
            raise serializers.ValidationError(f"At most {MAX_REQUIRED_CLAIMS} required claims.")
        for name, value in claims.items():
            if not name or len(name) > MAX_CLAIM_NAME_LENGTH or not name.isprintable():
                raise serializers.ValidationError(f"Claim names are 1 to {MAX_CLAIM_NAME_LENGTH} printable characters.")
            if name in RESERVED_CLAIMS:
                raise serializers.ValidationError(
                    f"{name!r} cannot be a required claim: use the attestation issuer, audience and subject "
                    "pattern fields, and leave time claims to token verification."
                )
            if isinstance(value, bool | int | float):
                continue
            if not isinstance(value, str):
                raise serializers.ValidationError(f"The value of {name!r} must be a string, a number or a boolean.")
            if len(value) > MAX_CLAIM_VALUE_LENGTH or not value.isprintable():
                raise serializers.ValidationError(
                    f"The value of {name!r} must be at most {MAX_CLAIM_VALUE_LENGTH} printable characters."
                )
        return claims


class SubjectPatternField(serializers.CharField):
    """An fnmatch-style glob for the attestation token's `sub` (see `services.subject_matches`)."""

    def to_internal_value(self, data) -> str:
        pattern = super().to_internal_value(data)
        if not pattern.isprintable():
            raise serializers.ValidationError("The subject pattern must be printable characters only.")
        return pattern


def _own_limit(maximum: int, what: str) -> serializers.IntegerField:
    """One of the agent's own broker limits (broker/limits.py); null falls back to the org's, then the platform's."""
    return serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=maximum,
        help_text=f"{what}; null: the org's, else the platform's.",
    )


class AgentRegistrationSerializer(StrictSerializer):
    """The body of POST /v1/agents. Every field but `name` is optional; what is sent is what changes."""

    name = serializers.CharField(
        max_length=100,
        validators=[
            FullMatch(
                REGISTRABLE_NAME_PATTERN,
                "Agent names are 1 to 100 lowercase letters, digits, '.', '_' and '-', starting with a letter or "
                "digit, and not all digits (that would read as an id in URLs).",
            )
        ],
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    max_ttl_seconds = ttl_seconds_field(required=False)
    grants = serializers.ListField(child=GrantSerializer(), required=False, max_length=MAX_GRANTS)
    attestation_required = serializers.BooleanField(required=False)
    attestation_issuer = serializers.CharField(max_length=500, required=False, allow_blank=True)
    attestation_jwks_uri = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    attestation_audience = serializers.CharField(max_length=500, required=False, allow_blank=True)
    attestation_algorithms = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(SUPPORTED_ALGORITHMS)),
        required=False,
        min_length=1,
        max_length=len(SUPPORTED_ALGORITHMS),
    )
    attestation_subject_pattern = SubjectPatternField(max_length=500, required=False, allow_blank=True)
    attestation_required_claims = RequiredClaimsField(required=False)
    rate_per_minute = _own_limit(MAX_RATE_PER_MINUTE, "This agent's credential requests per minute (token bucket)")
    burst = _own_limit(MAX_BURST, "Requests this agent may make at once")
    max_outstanding = _own_limit(MAX_OUTSTANDING, "Live credentials this agent may hold")

    refused_fields = {"status": "Use POST /v1/agents/<agent>/revoke or /restore to change the status."}

    def validate_attestation_algorithms(self, value: list[str]) -> list[str]:
        return _unique(value)


class AgentListParamsSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "description",
            "status",
            "max_ttl_seconds",
            "grants",
            "attestation_required",
            "attestation_issuer",
            "attestation_jwks_uri",
            "attestation_audience",
            "attestation_algorithms",
            "attestation_subject_pattern",
            "attestation_required_claims",
            "rate_per_minute",
            "burst",
            "max_outstanding",
            "created_at",
            "updated_at",
            "revoked_at",
        ]
        read_only_fields = fields
