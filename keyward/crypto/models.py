from django.db import models
from django.db.models import Q

from keyward.crypto.envelope import SealContext, SealedSecretFields

KID_MAX_LENGTH = 64


class SigningKeyState(models.TextChoices):
    ACTIVE = "active", "Active (signs new tokens)"
    RETIRING = "retiring", "Retiring (published until its tokens have expired)"
    RETIRED = "retired", "Retired (no longer published)"


class SigningKey(SealedSecretFields):
    """One of keyward's ES256 signing keys. keyward is one issuer, so these are platform-level.

    The private half is sealed in the platform context bound to the kid; the public JWK is in clear.
    """

    SEAL_PURPOSE = "signing_key"

    kid = models.CharField(max_length=KID_MAX_LENGTH, unique=True)
    public_jwk = models.JSONField()
    state = models.CharField(max_length=10, choices=SigningKeyState.choices, default=SigningKeyState.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    retiring_at = models.DateTimeField(null=True, blank=True)
    retire_after = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state=SigningKeyState.ACTIVE), name="crypto_signingkey_one_active"
            ),
            models.CheckConstraint(
                condition=Q(state=SigningKeyState.ACTIVE) | Q(retiring_at__isnull=False, retire_after__isnull=False),
                name="crypto_signingkey_retiring_has_deadline",
            ),
            models.CheckConstraint(
                condition=~Q(state=SigningKeyState.RETIRED) | Q(retired_at__isnull=False),
                name="crypto_signingkey_retired_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.state})"

    def seal_context(self) -> SealContext:
        return SealContext(org=None, purpose=self.SEAL_PURPOSE, object_id=self.kid, version=1)
