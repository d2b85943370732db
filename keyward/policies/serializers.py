"""Shapes of the policy API. Field rules (names, patterns, conditions) live in services.validate_rule."""

from rest_framework import serializers

from keyward.policies.models import Effect, Policy

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

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", _ANY_HELP)
        super().__init__(required=False, allow_blank=True, allow_null=True, trim_whitespace=False, **kwargs)


class PolicyCreateSerializer(serializers.Serializer):
    agent = RuleField(max_length=100)
    provider = RuleField(max_length=100)
    scope = RuleField(max_length=200, help_text="A scope (charges:read) or a prefix wildcard (charges:*). " + _ANY_HELP)
    environment = RuleField(max_length=64)
    effect = serializers.ChoiceField(choices=Effect.choices)
    conditions = serializers.DictField(
        required=False,
        allow_null=True,
        help_text='Optional: {"time_window": {days?, start, end, tz?}, "source_cidrs": [cidr, ...]}.',
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class PolicyListParamsSerializer(serializers.Serializer):
    agent = serializers.CharField(required=False, max_length=100, help_text="Exact; * lists rules for any agent.")
    provider = serializers.CharField(required=False, max_length=100, help_text="Exact; * lists rules for any provider.")
    effect = serializers.ChoiceField(required=False, choices=Effect.choices)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    cursor = serializers.CharField(required=False, max_length=200)


class SimulateSerializer(serializers.Serializer):
    agent = serializers.CharField(max_length=100, trim_whitespace=False)
    provider = serializers.CharField(max_length=100, trim_whitespace=False)
    scope = serializers.CharField(max_length=4100, help_text="One or more scopes separated by spaces.")
    environment = serializers.CharField(required=False, max_length=64, trim_whitespace=False, help_text="Default prod.")
    ip = serializers.IPAddressField(required=False, help_text="The caller's address, for source_cidrs conditions.")
    at = serializers.DateTimeField(required=False, help_text="ISO 8601; when to evaluate time windows (default now).")


class SimulateResponseSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Effect.choices, help_text="The outcome (the same value as effect).")
    effect = serializers.ChoiceField(choices=Effect.choices)
    policy = PolicySerializer(allow_null=True, help_text="The deciding rule; null when nothing matched (deny).")
    scope = serializers.CharField(help_text="The requested scope whose outcome decided.")
    reason = serializers.CharField()
