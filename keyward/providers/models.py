from django.db import models

from keyward.crypto.envelope import SealContext, SealedSecretFields
from keyward.tenancy.models import Org

PROVIDER_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class ProviderKind(models.TextChoices):
    KEYWARD_JWT = "keyward_jwt", "keyward-signed JWT"
    STATIC = "static", "Stored secret per scope"
    GITHUB_APP = "github_app", "GitHub App installation token"
    AWS_STS = "aws_sts", "AWS STS AssumeRole"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth 2.0 client credentials"
    OAUTH2_TOKEN_EXCHANGE = "oauth2_token_exchange", "OAuth 2.0 token exchange (RFC 8693)"


class Provider(models.Model):
    """What an agent asks credentials for (the seed calls these "secrets"), keyed by name per org.

    `config` is public, kind-specific configuration; `scopes` is the catalogue of scopes it offers.
    The secret itself lives in versioned, sealed `ProviderSecret` rows; `secret_version` is current.
    """

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="providers")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=40, choices=ProviderKind.choices)
    description = models.CharField(max_length=500, blank=True)
    config = models.JSONField(default=dict, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    max_ttl_seconds = models.PositiveIntegerField(default=3600)
    secret_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="provider_name_unique_per_org")]

    def __str__(self) -> str:
        return self.name


class ProviderSecret(SealedSecretFields):
    """One version of a provider's secret, sealed to (org, provider, version). Never leaves in clear."""

    SEAL_PURPOSE = "provider_secret"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="secrets")
    version = models.PositiveIntegerField()
    fingerprint = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    seal_select_related = ("provider__org",)

    class Meta:
        ordering = ["provider", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "version"], name="provider_secret_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} v{self.version}"

    def seal_context(self) -> SealContext:
        return SealContext(
            org=self.provider.org, purpose=self.SEAL_PURPOSE, object_id=self.provider_id, version=self.version
        )
