from rest_framework import serializers

from keyward.approvals.models import Approval, ApprovalStatus
from keyward.core.validation import StrictSerializer, cursor_field


class ApprovalSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")

    class Meta:
        model = Approval
        fields = [
            "id",
            "status",
            "agent",
            "end_user",
            "end_user_email",
            "provider",
            "scope",
            "environment",
            "ttl_seconds",
            "delegation_chain",
            "policy_id",
            "reason",
            "decided_by",
            "decided_at",
            "expires_at",
            "created_at",
            "consumed_at",
            "credential_jti",
        ]
        read_only_fields = fields


class DecisionSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ApprovalFilterSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=ApprovalStatus.choices, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, help_text="Page size (default 50).")
    cursor = cursor_field()


class WebhookSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2000)
    secret = serializers.CharField(min_length=16, max_length=500, write_only=True, trim_whitespace=False)


class WebhookStateSerializer(serializers.Serializer):
    """What an admin may see of the webhook: the host and a fingerprint of the secret."""

    host = serializers.CharField()
    secret_fingerprint = serializers.CharField()
    updated_at = serializers.DateTimeField()
