"""Where audit events stream to, and how far each stream has got.

The audit rows themselves are the durable outbox: nothing is copied. A `SiemCursor` per destination
per chain remembers the last `seq` that destination acknowledged; delivery reads the rows after it.
"""

import uuid

from django.db import models
from django.utils import timezone

from keyward.crypto.envelope import SealContext, SealedDestinationFields
from keyward.tenancy.models import Org


class DestinationKind(models.TextChoices):
    """`platform`: the operator's KEYWARD_SIEM_WEBHOOK_URL, every chain. `org`: an org's own, its chain."""

    PLATFORM = "platform", "Platform (operator)"
    ORG = "org", "Org"


class CursorState(models.TextChoices):
    OK = "ok", "Delivering"
    BACKING_OFF = "backing_off", "Backing off after a failure"
    PARKED = "parked", "Parked (needs a human)"


class OrgSiemDestination(SealedDestinationFields):
    """An org's own SIEM endpoint. The URL and the signing secret are sealed together (URLs often
    carry a token); only the host is stored in the clear, for display."""

    SEAL_PURPOSE = "siem_destination"

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="siem_destination")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    seal_select_related = ("org",)

    def __str__(self) -> str:
        return f"{self.org_id} → {self.host}"

    def seal_context(self) -> SealContext:
        return SealContext(org=self.org, purpose=self.SEAL_PURPOSE, object_id=self.uid, version=1)


class SiemCursor(models.Model):
    """How far one destination has received one chain (`org:<id>`, or `platform` with org NULL)."""

    destination = models.CharField(max_length=16, choices=DestinationKind.choices)
    chain = models.CharField(max_length=40)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    last_seq = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=CursorState.choices, default=CursorState.OK)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=200, blank=True)
    parked_at = models.DateTimeField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination", "chain"], name="siem_cursor_one_per_chain"),
        ]
        indexes = [models.Index(fields=["destination", "state", "next_attempt_at"], name="siem_cursor_due")]

    def __str__(self) -> str:
        return f"{self.destination} {self.chain} @ {self.last_seq} ({self.state})"
