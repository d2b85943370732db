from django.db import models

from keyward.tenancy.models import Org

AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"


class Agent(models.Model):
    """An AI agent of an org, known by a stable name (registration is idempotent by name).

    `grants` is a list of `{"provider": name, "scopes": [pattern, ...], "environments": [env, ...]}`:
    a scope pattern is exact (`charges:read`) or ends in `*` after a colon (`charges:*`), or is `*`.
    Attestation, when required, pins who may act as this agent: an OIDC JWT from `attestation_issuer`
    whose `sub` matches the glob `attestation_subject_pattern` and whose claims include
    `attestation_required_claims`.
    """

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=AgentStatus.choices, default=AgentStatus.ACTIVE)
    max_ttl_seconds = models.PositiveIntegerField(default=3600)
    grants = models.JSONField(default=list, blank=True)
    attestation_required = models.BooleanField(default=False)
    attestation_issuer = models.CharField(max_length=500, blank=True)
    attestation_jwks_uri = models.CharField(max_length=2000, blank=True)
    attestation_audience = models.CharField(max_length=500, blank=True)
    attestation_algorithms = models.JSONField(default=list, blank=True)
    attestation_subject_pattern = models.CharField(max_length=500, blank=True)
    attestation_required_claims = models.JSONField(default=dict, blank=True)
    # This agent's broker limits; None takes the org's, then the platform's (broker/limits.py).
    rate_per_minute = models.PositiveIntegerField(null=True, blank=True)
    burst = models.PositiveIntegerField(null=True, blank=True)
    max_outstanding = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="agent_name_unique_per_org")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == AgentStatus.ACTIVE
