from rest_framework import serializers

from keyward.core.validation import StrictSerializer
from keyward.siem.models import CursorState
from keyward.siem.services import MIN_SECRET_LENGTH


class SiemDestinationSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2000)
    secret = serializers.CharField(min_length=MIN_SECRET_LENGTH, max_length=500, write_only=True, trim_whitespace=False)


class SiemStatusSerializer(serializers.Serializer):
    """The org's SIEM destination as its admins may see it: the host only, and how delivery stands."""

    host = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=CursorState.choices)
    delivered_through = serializers.IntegerField(help_text="Highest seq the SIEM has acknowledged.")
    head = serializers.IntegerField(help_text="The org's newest audit seq.")
    pending_events = serializers.IntegerField()
    attempts = serializers.IntegerField(help_text="Failed attempts since the last success.")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    parked_at = serializers.DateTimeField(allow_null=True)
    last_delivered_at = serializers.DateTimeField(allow_null=True)
