from rest_framework import serializers

from broker.models import IntrospectionKey, IssuedCredential


class IssuedCredentialSerializer(serializers.ModelSerializer):
    """The record of a hand-out; never the credential."""

    agent = serializers.CharField(source="agent.name")
    provider = serializers.CharField(source="provider.name")
    parent_jti = serializers.CharField(source="parent.jti", default=None)
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


class IssuedFilterSerializer(serializers.Serializer):
    agent = serializers.CharField(max_length=100, required=False)
    provider = serializers.CharField(max_length=100, required=False)
    end_user = serializers.CharField(max_length=255, required=False)
    status = serializers.ChoiceField(choices=["active", "revoked", "expired"], required=False)


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class IntrospectionKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = IntrospectionKey
        fields = ["id", "name", "prefix", "created_at", "created_by", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "created_by", "revoked_at"]


class IntrospectRequestSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=16384, trim_whitespace=True)


class CredentialRequestSerializer(serializers.Serializer):
    """Documentation only: the broker parses its body itself (broker/parsing.py)."""

    provider = serializers.CharField()
    scope = serializers.CharField(help_text="one or more space-separated scopes")
    ttl = serializers.CharField(required=False, help_text='"90s", "5m", "1h" or seconds')
