"""Query and body validation for the audit API, and the row shape it returns."""

from datetime import datetime

from rest_framework import serializers

from keyward.audit.exports import SIGNATURE_PATTERN
from keyward.audit.models import AuditEvent, AuditExport, ExportFormat, Outcome
from keyward.audit.services import MAX_PRUNE_DAYS, min_prune_days
from keyward.audit.writer import EVENT_TYPE_PATTERN
from keyward.core.validation import FullMatch, StrictSerializer, cursor_field

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


class AuditListParamsSerializer(StrictSerializer):
    agent = serializers.CharField(required=False, max_length=100, help_text="Agent name (exact).")
    event = serializers.CharField(
        required=False,
        max_length=64,
        validators=[FullMatch(EVENT_TYPE_PATTERN)],
        help_text="Event type (exact), e.g. account.login_failed.",
    )
    outcome = serializers.ChoiceField(required=False, choices=Outcome.choices)
    end_user = serializers.CharField(required=False, max_length=254, help_text="End user (exact).")
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; rows at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; rows before this time.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, help_text="Page size (default 50).")
    cursor = cursor_field()


class ExportParamsSerializer(StrictSerializer):
    format = serializers.ChoiceField(
        choices=ExportFormat.choices, default=ExportFormat.JSON, help_text="Body format (default json)."
    )
    since = serializers.IntegerField(
        min_value=0, max_value=MAX_SEQ, default=0, help_text="Export rows with a larger seq (0: from the start)."
    )


class PruneSerializer(StrictSerializer):
    days = serializers.IntegerField(
        min_value=min_prune_days(),
        max_value=MAX_PRUNE_DAYS,
        help_text="Delete rows older than this many days; the operator's floor (KEYWARD_AUDIT_MIN_RETENTION_DAYS, "
        "30 by default) is the minimum.",
    )


class DownloadParamsSerializer(StrictSerializer):
    sig = serializers.CharField(
        max_length=1000,
        validators=[FullMatch(SIGNATURE_PATTERN)],
        help_text="The signature from `download_url`.",
    )


class PruneResponseSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
    held_for_siem = serializers.BooleanField(
        help_text="True when older rows were kept because a SIEM destination has not received them yet."
    )


class ExportRequestSerializer(ExportParamsSerializer):
    """The synchronous export's parameters, plus an upper bound (background exports have no row cap)."""

    until = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SEQ,
        required=False,
        allow_null=True,
        default=None,
        help_text="Export rows up to and including this seq (default and at most: the last row when requested).",
    )

    def validate(self, data):
        if data["until"] is not None and data["until"] < data["since"]:
            raise serializers.ValidationError({"until": ["Must not be smaller than since."]})
        return data


class ExportCreatedSerializer(serializers.Serializer):
    export_id = serializers.CharField()


class ExportStatusSerializer(serializers.ModelSerializer):
    """An export's state; `download_url` (a signed link, valid for minutes) only once it is done.

    The view passes the link it made (`context["link"]`); the serializer only renders it.
    """

    since = serializers.IntegerField(source="since_seq")
    until = serializers.IntegerField(source="until_seq")
    rows = serializers.IntegerField(source="row_count")
    bytes = serializers.IntegerField(source="size_bytes")
    download_url = serializers.SerializerMethodField()
    download_expires_at = serializers.SerializerMethodField()

    class Meta:
        model = AuditExport
        fields = [
            "id",
            "status",
            "format",
            "since",
            "until",
            "rows",
            "bytes",
            "sha256",
            "error",
            "downloads",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "download_url",
            "download_expires_at",
        ]
        read_only_fields = fields

    def get_download_url(self, export: AuditExport) -> str | None:
        link = self.context.get("link")
        return None if link is None else self.context["request"].build_absolute_uri(link.url)

    def get_download_expires_at(self, export: AuditExport) -> datetime | None:
        link = self.context.get("link")
        return None if link is None else link.expires_at
