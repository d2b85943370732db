"""Shapes of the policy API, with the patterns services.validate_rule enforces (the schema shows them)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keyward import scopes as scope_rules
from keyward.core.validation import FullMatch, StrictSerializer, cursor_field
from keyward.policies import conditions as policy_conditions
from keyward.policies.conditions import DAY_PATTERN, MAX_CIDR_LENGTH, MAX_SOURCE_CIDRS, TIME_PATTERN, TZ_NAME_PATTERN
from keyward.policies.models import Effect, Policy
from keyward.policies.services import ENVIRONMENT_PATTERN, NAME_PATTERN, RULE_ENVIRONMENT_PATTERN, RULE_NAME_PATTERN

_ANY_HELP = "Empty, absent or * matches any."


class PolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = Policy
        fields = [
            "id",
            "agent",
            "provider",
            "scope",
            "environment",
            "effect",
            "conditions",
            "description",
            "created_at",
        ]
        read_only_fields = fields


class RuleField(serializers.CharField):
    """A rule field as sent: untrimmed (a stray space is refused, not silently dropped); may be "any"."""

    def __init__(self, pattern: str, **kwargs):
        kwargs.setdefault("help_text", _ANY_HELP)
        super().__init__(required=False, allow_blank=True, allow_null=True, validators=[FullMatch(pattern)], **kwargs)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": False,
        "properties": {
            "time_window": {
                "type": "object",
                "additionalProperties": False,
                "required": ["start", "end"],
                "properties": {
                    "days": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": DAY_PATTERN}},
                    "start": {"type": "string", "pattern": TIME_PATTERN, "description": "HH:MM, inclusive."},
                    "end": {"type": "string", "pattern": TIME_PATTERN, "description": "HH:MM, exclusive."},
                    "tz": {"type": "string", "pattern": TZ_NAME_PATTERN, "description": "An IANA name; default UTC."},
                },
            },
            "source_cidrs": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SOURCE_CIDRS,
                "items": {"type": "string", "maxLength": MAX_CIDR_LENGTH},
            },
        },
        "description": "Optional; every condition given must hold. See docs/api.md, Policies.",
    }
)
class ConditionsField(serializers.DictField):
    """Conditions as sent; `policies.conditions.normalise` checks and normalises them (unknown ones refused)."""


class PolicyCreateSerializer(StrictSerializer):
    agent = RuleField(RULE_NAME_PATTERN, max_length=100)
    provider = RuleField(RULE_NAME_PATTERN, max_length=100)
    scope = RuleField(
        scope_rules.SCOPE_PATTERN_PATTERN,
        max_length=200,
        help_text="A scope (charges:read) or a prefix wildcard (charges:*). " + _ANY_HELP,
    )
    environment = RuleField(RULE_ENVIRONMENT_PATTERN, max_length=64)
    effect = serializers.ChoiceField(choices=Effect.choices)
    conditions = ConditionsField(required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    def validate_conditions(self, conditions):
        """Checked here too, so one answer names every bad field; the service stores them normalised."""
        try:
            policy_conditions.normalise(conditions)
        except policy_conditions.InvalidCondition as exc:
            raise serializers.ValidationError(str(exc)) from None
        return conditions


class PolicyListParamsSerializer(StrictSerializer):
    agent = serializers.CharField(required=False, max_length=100, help_text="Exact; * lists rules for any agent.")
    provider = serializers.CharField(required=False, max_length=100, help_text="Exact; * lists rules for any provider.")
    effect = serializers.ChoiceField(required=False, choices=Effect.choices)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, help_text="Page size (default 100).")
    cursor = cursor_field()


@extend_schema_field({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
class AddressField(serializers.IPAddressField):
    pass


class SimulateSerializer(StrictSerializer):
    agent = serializers.CharField(max_length=100, validators=[FullMatch(NAME_PATTERN)])
    provider = serializers.CharField(max_length=100, validators=[FullMatch(NAME_PATTERN)])
    scope = serializers.CharField(
        max_length=scope_rules.MAX_REQUESTED_SCOPES_LENGTH,
        validators=[FullMatch(scope_rules.REQUESTED_SCOPES_PATTERN)],
        help_text="One or more scopes separated by spaces (at most 20).",
    )
    environment = serializers.CharField(
        required=False, max_length=64, validators=[FullMatch(ENVIRONMENT_PATTERN)], help_text="Default prod."
    )
    ip = AddressField(required=False, help_text="The caller's address, for source_cidrs conditions.")
    at = serializers.DateTimeField(required=False, help_text="ISO 8601; when to evaluate time windows (default now).")


class SimulateResponseSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Effect.choices, help_text="The outcome (the same value as effect).")
    effect = serializers.ChoiceField(choices=Effect.choices)
    policy = PolicySerializer(allow_null=True, help_text="The deciding rule; null when nothing matched (deny).")
    scope = serializers.CharField(help_text="The requested scope whose outcome decided.")
    reason = serializers.CharField()
