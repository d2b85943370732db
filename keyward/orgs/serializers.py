"""The org settings shape (GET /v1/org) and what PATCH /v1/org accepts, with its ranges."""

from rest_framework import serializers

from keyward.core.validation import StrictSerializer
from keyward.orgs.services import EDITABLE_SETTINGS
from keyward.tenancy.models import Org


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
            "broker_rate_per_agent",
            "broker_burst_per_agent",
            "broker_rate_per_end_user",
            "broker_burst_per_end_user",
            "max_outstanding_per_agent",
            "created_at",
        ]
        read_only_fields = fields


class OrgSettingsChangeSerializer(StrictSerializer):
    """Only the settings the service lets an owner edit, with its bounds; any other key is refused."""

    unknown_field_message = "This setting cannot be changed here."
    min_fields = 1

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            name: serializers.IntegerField(
                min_value=setting.minimum,
                max_value=setting.maximum,
                allow_null=setting.nullable,
                required=False,
                help_text=setting.help,
            )
            for name, setting in EDITABLE_SETTINGS.items()
        }

    def validate(self, data):
        if len(data) < self.min_fields:
            raise serializers.ValidationError("Send at least one setting to change.")
        return data
