import uuid

from django.db import models

from keyward.accounts.models import normalize_email
from keyward.agents.models import Agent
from keyward.crypto.envelope import SealContext, SealedDestinationFields
from keyward.tenancy.models import Org


def requester_emails(end_user: str, end_user_email: str) -> set[str]:
    """Who the request was made for, as comparable emails: the token's `sub` (when it is an email)
    and its `email` claim (opaque subjects are the norm at Okta, Entra ID, Auth0 and Google)."""
    return {normalize_email(value) for value in (end_user, end_user_email) if value}


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CONSUMED = "consumed", "Consumed"


class Approval(models.Model):
    """A credential request parked for a human. `request_key` identifies "the identical request":
    same org, agent, end user, provider, scope, environment and delegation parent."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="approvals")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="approvals")
    end_user = models.CharField(max_length=255)
    end_user_email = models.CharField(max_length=254, blank=True, default="")
    provider = models.CharField(max_length=100)
    scope = models.CharField(max_length=1000)
    environment = models.CharField(max_length=64)
    ttl_seconds = models.PositiveIntegerField()
    delegation_chain = models.JSONField(default=list, blank=True)
    parent_jti = models.CharField(max_length=64, blank=True)
    request_key = models.CharField(max_length=64, db_index=True)
    policy_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    reason = models.CharField(max_length=500, blank=True)
    decided_by = models.CharField(max_length=254, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    credential_jti = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["org", "status", "created_at"], name="approval_queue")]
        constraints = [
            # At most one open approval per identical request: concurrent retries share it.
            models.UniqueConstraint(
                fields=["org", "request_key"],
                condition=models.Q(status__in=["pending", "approved"]),
                name="approval_one_open_per_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class ApprovalWebhook(SealedDestinationFields):
    """An org's optional approval-notification webhook. The URL and the HMAC signing secret are
    sealed together (a Slack-style URL is itself a secret); only the host is kept in the clear."""

    SEAL_PURPOSE = "approval_webhook_secret"
    SEAL_VERSION = 2  # the sealed value is JSON {url, secret}; version 1 sealed the bare secret

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="approval_webhook")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    secret_fingerprint = models.CharField(max_length=32)
    updated_at = models.DateTimeField(auto_now=True)

    seal_select_related = ("org",)

    def __str__(self) -> str:
        return f"{self.org_id} → {self.host}"

    def seal_context(self) -> SealContext:
        return SealContext(org=self.org, purpose=self.SEAL_PURPOSE, object_id=self.uid, version=self.SEAL_VERSION)
