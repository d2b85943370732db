"""The org settings shape (GET /v1/org) and what PATCH /v1/org accepts, with its ranges."""

from rest_framework import serializers

from keyward.audit.services import MAX_PRUNE_DAYS
from keyward.tenancy.models import Org

MINUTE, DAY = 60, 86_400


class OrgSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Org
        fields = [
            "id",
            "name",
            "slug",
            "plan",
            "max_delegation_depth",
            "max_ttl_seconds",
            "approval_pending_seconds",
            "approval_grant_seconds",
            "approval_denial_seconds",
            "audit_retention_days",
            "created_at",
        ]
        read_only_fields = fields


class OrgSettingsChangeSerializer(serializers.Serializer):
    """Only the settings named here; any other key is refused rather than silently ignored."""

    audit_retention_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PRUNE_DAYS,
        allow_null=True,
        required=False,
        help_text="Audit rows older than this many days are pruned daily; null keeps them forever.",
    )
    approval_pending_seconds = serializers.IntegerField(
        min_value=MINUTE, max_value=7 * DAY, required=False, help_text="How long a request waits for an approver."
    )
    approval_grant_seconds = serializers.IntegerField(
        min_value=MINUTE, max_value=DAY, required=False, help_text="How long an approval stays usable."
    )
    approval_denial_seconds = serializers.IntegerField(
        min_value=MINUTE,
        max_value=7 * DAY,
        required=False,
        help_text="How long a denial keeps refusing the identical request.",
    )

    def validate(self, data):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["This setting cannot be changed here."] for name in unknown})
        if not data:
            raise serializers.ValidationError("Send at least one setting to change.")
        return data
