"""Query and body validation for the audit API, and the row shape it returns."""

from rest_framework import serializers

from keyward.audit.models import AuditEvent, Outcome
from keyward.audit.services import MAX_PRUNE_DAYS

MAX_SEQ = 2**63 - 1


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "event_type",
            "outcome",
            "reason_code",
            "actor_type",
            "actor_id",
            "actor_name",
            "end_user",
            "agent",
            "delegation_chain",
            "provider",
            "scope",
            "environment",
            "credential_jti",
            "request_id",
            "ip",
            "detail",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditListParamsSerializer(serializers.Serializer):
    agent = serializers.CharField(required=False, max_length=200)
    event = serializers.CharField(required=False, max_length=64)
    outcome = serializers.ChoiceField(required=False, choices=Outcome.choices)
    end_user = serializers.CharField(required=False, max_length=254)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; rows at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; rows before this time.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    cursor = serializers.CharField(required=False, max_length=200)


class ExportParamsSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")
    since = serializers.IntegerField(
        min_value=0, max_value=MAX_SEQ, default=0, help_text="Export rows with a larger seq (0: from the start)."
    )


class PruneSerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=MAX_PRUNE_DAYS)


class PruneResponseSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
