from django.db import models
from django.utils.text import slugify


class Plan(models.TextChoices):
    FREE = "free", "Free"
    TEAM = "team", "Team"
    ENTERPRISE = "enterprise", "Enterprise"


class Org(models.Model):
    """A tenant. Every piece of org data hangs off one of these and is read through the scoping hook."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.FREE)
    max_delegation_depth = models.PositiveSmallIntegerField(default=3)
    max_ttl_seconds = models.PositiveIntegerField(default=3600)
    # Approvals: how long a request waits for a human, how long an approval stays usable, and
    # how long a denial keeps refusing the identical request.
    approval_pending_seconds = models.PositiveIntegerField(default=3600)
    approval_grant_seconds = models.PositiveIntegerField(default=900)
    approval_denial_seconds = models.PositiveIntegerField(default=900)
    # Audit rows older than this are pruned by the retention task; None keeps them forever.
    audit_retention_days = models.PositiveIntegerField(null=True, blank=True, default=365)
    # Broker limits for this org; None takes the platform default (KEYWARD_BROKER_*). An agent's own
    # limits (Agent.rate_per_minute, burst, max_outstanding) take precedence over these.
    broker_rate_per_agent = models.PositiveIntegerField(null=True, blank=True)
    broker_burst_per_agent = models.PositiveIntegerField(null=True, blank=True)
    broker_rate_per_end_user = models.PositiveIntegerField(null=True, blank=True)
    broker_burst_per_end_user = models.PositiveIntegerField(null=True, blank=True)
    max_outstanding_per_agent = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.slug


def unique_org_slug(name: str) -> str:
    """A slug from the org's name, suffixed with a number when another org already has it."""
    base = slugify(name)[:50] or "org"
    slug, suffix = base, 1
    while Org.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    return slug
