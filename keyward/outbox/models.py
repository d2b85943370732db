from django.db import models
from django.utils import timezone

from keyward.tenancy.models import Org


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    PARKED = "parked", "Parked (needs a human)"


class OutboxMessage(models.Model):
    """Work that must not be lost, written in the same transaction as the change that caused it.

    A Celery task delivers it right after commit; a periodic sweep redelivers whatever a dead
    worker or an unreachable broker left behind. `payload` never holds a secret.
    """

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="outbox_messages")
    kind = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"
