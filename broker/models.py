from django.db import models

from keyward.agents.models import Agent
from keyward.crypto.envelope import SealContext, SealedSecretFields
from keyward.providers.models import Provider
from keyward.tenancy.models import Org


class IssuedCredential(models.Model):
    """The record of one credential keyward handed out: who, what, until when, from which parent.

    Never the credential itself. `chain` lists agent names from the root to this credential's agent;
    `delegation_jti` is the jti of the delegation token issued with it (what a sub-agent presents).
    """

    jti = models.CharField(max_length=64, unique=True)
    delegation_jti = models.CharField(max_length=64, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="issued_credentials")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="issued_credentials")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="issued_credentials")
    end_user = models.CharField(max_length=255)
    end_user_email = models.CharField(max_length=254, blank=True, default="")
    scope = models.CharField(max_length=1000)
    environment = models.CharField(max_length=64)
    token_type = models.CharField(max_length=40)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    depth = models.PositiveSmallIntegerField(default=1)
    chain = models.JSONField(default=list)
    approval_id = models.CharField(max_length=40, blank=True)
    policy_id = models.BigIntegerField(null=True, blank=True)
    native = models.JSONField(default=dict, blank=True)
    revocable_upstream = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        indexes = [
            models.Index(fields=["org", "-issued_at"], name="issued_recent"),
            models.Index(fields=["org", "agent", "-issued_at"], name="issued_by_agent"),
            # The outstanding-credential cap counts an agent's live credentials on every issuance.
            models.Index(
                fields=["agent", "expires_at"], name="issued_live_by_agent", condition=models.Q(revoked_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return self.jti


class IdempotencyRecord(SealedSecretFields):
    """An `Idempotency-Key` answer kept for replay. The body holds the credential, so it is sealed."""

    SEAL_PURPOSE = "idempotent_response"

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    seal_select_related = ("org",)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "agent", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.key}"

    def seal_context(self) -> SealContext:
        return SealContext(org=self.org, purpose=self.SEAL_PURPOSE, object_id=self.pk, version=1)


class IntrospectionKey(models.Model):
    """An org-scoped key a resource server uses to call POST /v1/introspect. Stored as a hash."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="introspection_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=254, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class RevocationHandle(SealedSecretFields):
    """What a minter needs to revoke one credential upstream (GitHub: the token itself), sealed to org + jti.

    Only for kinds that can revoke upstream. Deleted once the upstream revocation is done (or
    refused for good) and, for every org, pruned once expired when a new handle is stored.
    """

    SEAL_PURPOSE = "revocation_handle"

    credential = models.OneToOneField(
        IssuedCredential, to_field="jti", on_delete=models.CASCADE, related_name="revocation_handle"
    )
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()

    seal_select_related = ("org",)

    class Meta:
        indexes = [models.Index(fields=["org", "expires_at"], name="revocation_handle_expiry")]

    def __str__(self) -> str:
        return self.credential_id

    def seal_context(self) -> SealContext:
        return SealContext(org=self.org, purpose=self.SEAL_PURPOSE, object_id=self.credential_id, version=1)
