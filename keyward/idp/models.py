import secrets

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
    An issuer belongs to one org (IdpIssuer), unless the operator lists it as shared.
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


class IdpIssuer(models.Model):
    """The one org an issuer belongs to, so no other org can route (or break) that issuer's tokens.

    Maintained by `keyward.idp.issuers`: claimed by the first org that configures a connector with
    this issuer, released when its last such connector goes. Issuers listed in
    `KEYWARD_SHARED_ISSUERS` (multi-tenant IdPs) have no row. First come, first served: nothing
    proves control of the issuer, so an operator removes a wrong claim by hand (docs/self-hosting.md).
    """

    issuer = models.CharField(max_length=500, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="idp_issuers")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["issuer"]

    def __str__(self) -> str:
        return self.issuer


def new_verification_token() -> str:
    """The value an org publishes in DNS to prove it controls a domain. Public once published."""
    return secrets.token_urlsafe(24)


class IdpEmailDomain(models.Model):
    """An org's claim that an email domain signs in through one of its connectors (tenant SSO).

    A claim routes sign-ins only once verified by a DNS TXT record. Unverified claims are the
    org's own business and may coexist across orgs; a verified domain belongs to one org only.
    """

    VERIFICATION_PREFIX = "keyward-verification="
    VERIFICATION_LABEL = "_keyward"

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="idp_email_domains")
    connector = models.ForeignKey(IdpConnector, on_delete=models.CASCADE, related_name="email_domains")
    domain = models.CharField(max_length=253)
    verification_token = models.CharField(max_length=64, default=new_verification_token)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["org", "domain"], name="idp_domain_unique_per_org"),
            models.UniqueConstraint(
                fields=["domain"], condition=models.Q(verified_at__isnull=False), name="idp_domain_verified_once"
            ),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def verified(self) -> bool:
        return self.verified_at is not None

    @property
    def verification_name(self) -> str:
        """Where the TXT record goes."""
        return f"{self.VERIFICATION_LABEL}.{self.domain}"

    @property
    def verification_record(self) -> str:
        """The TXT record's value."""
        return f"{self.VERIFICATION_PREFIX}{self.verification_token}"


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
