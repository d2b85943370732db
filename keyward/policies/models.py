from django.db import models

from keyward import scopes
from keyward.tenancy.models import Org

ANY = ""  # a rule field left empty matches anything


class Effect(models.TextChoices):
    ALLOW = "allow", "Allow"
    REQUIRE_APPROVAL = "require_approval", "Require approval"
    DENY = "deny", "Deny"


EFFECT_RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}


class Policy(models.Model):
    """`(agent?, provider?, scope?, environment?) -> effect`, with optional conditions.

    Empty fields match anything. `scope` is exact, a prefix wildcard (`charges:*`), or empty.
    The precedence columns are derived on save so the engine can order candidates in SQL:
    more non-empty fields first, then a more precise scope, then the more restrictive effect.
    """

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="policies")
    agent = models.CharField(max_length=100, blank=True, default=ANY)
    provider = models.CharField(max_length=100, blank=True, default=ANY)
    scope = models.CharField(max_length=200, blank=True, default=ANY)
    environment = models.CharField(max_length=64, blank=True, default=ANY)
    effect = models.CharField(max_length=20, choices=Effect.choices)
    conditions = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=500, blank=True)
    field_count = models.PositiveSmallIntegerField(editable=False)
    scope_precision = models.PositiveSmallIntegerField(editable=False)
    effect_rank = models.PositiveSmallIntegerField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["org", "provider", "scope", "agent", "environment"], name="policy_lookup"),
        ]

    def __str__(self) -> str:
        fields = "/".join(value or "*" for value in (self.agent, self.provider, self.scope, self.environment))
        return f"{fields} -> {self.effect}"

    def save(self, *args, **kwargs):
        self.set_precedence()
        super().save(*args, **kwargs)

    def set_precedence(self) -> None:
        """Normalise `*` to "any" and derive the precedence columns (call it before `bulk_create`)."""
        if self.scope == "*":
            self.scope = ANY
        self.field_count = sum(1 for value in (self.agent, self.provider, self.scope, self.environment) if value)
        self.scope_precision = scopes.precision(self.scope)
        self.effect_rank = EFFECT_RANK[self.effect]
