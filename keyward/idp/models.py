from django.db import models

from keyward.crypto.envelope import SealContext, SealedSecretFields
from keyward.jose.keys import SUPPORTED_ALGORITHMS as _VERIFIABLE
from keyward.tenancy.models import Org

SUPPORTED_ALGORITHMS = tuple(sorted(_VERIFIABLE))


class IdpKind(models.TextChoices):
    OIDC = "oidc", "OIDC / JWT identity provider"
    DEV = "dev", "Built-in dev IdP (dev mode only)"


class IdpConnector(models.Model):
    """An identity provider whose end-user tokens an org accepts.

    `(issuer, audience)` is unique across orgs: a token's `iss` + `aud` selects exactly one org.
    """

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="idp_connectors")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=IdpKind.choices, default=IdpKind.OIDC)
    issuer = models.CharField(max_length=500)
    audience = models.CharField(max_length=500)
    jwks_uri = models.CharField(max_length=2000, blank=True)
    discovery_url = models.CharField(max_length=2000, blank=True)
    allowed_algorithms = models.JSONField(default=list)
    oidc_client_id = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "audience"], name="idp_issuer_audience_unique"),
            models.UniqueConstraint(fields=["org", "name"], name="idp_name_unique_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.issuer})"


class IdpEmailDomain(models.Model):
    """An email domain routed to a connector for tenant SSO; a domain belongs to one org at most."""

    connector = models.ForeignKey(IdpConnector, on_delete=models.CASCADE, related_name="email_domains")
    domain = models.CharField(max_length=253, unique=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class DevIdpKey(SealedSecretFields):
    """The signing key of an org's built-in dev IdP (dev mode only); private half sealed to the org."""

    SEAL_PURPOSE = "dev_idp_key"

    connector = models.OneToOneField(IdpConnector, on_delete=models.CASCADE, related_name="dev_key")
    kid = models.CharField(max_length=64, unique=True)
    public_jwk = models.JSONField()

    seal_select_related = ("connector__org",)

    def __str__(self) -> str:
        return f"dev IdP key {self.kid}"

    def seal_context(self) -> SealContext:
        return SealContext(org=self.connector.org, purpose=self.SEAL_PURPOSE, object_id=self.kid, version=1)
