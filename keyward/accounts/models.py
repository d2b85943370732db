import hashlib
import hmac
import secrets
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from keyward.tenancy.models import Org


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"
    SUPERADMIN = "superadmin", "Superadmin"


ROLE_RANK = {Role.VIEWER: 1, Role.ADMIN: 2, Role.OWNER: 3, Role.SUPERADMIN: 4}


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively everywhere, so they are stored lowercased."""
    return email.strip().lower()


class AccountManager(BaseUserManager):
    def get_by_natural_key(self, email: str) -> "Account":
        return self.get(email=normalize_email(email))

    def create_account(self, *, email: str, password: str | None, org: Org | None, role: str) -> "Account":
        account = self.model(email=normalize_email(email), org=org, role=role)
        account.set_password(password)
        account.save()
        return account


class Account(AbstractBaseUser):
    """A human who runs keyward: an org member with a role, or a platform superadmin (no org)."""

    email = models.EmailField(max_length=254, unique=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="accounts", null=True, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccountManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="account_email_ci_unique"),
            models.CheckConstraint(
                condition=models.Q(role=Role.SUPERADMIN) | models.Q(org__isnull=False),
                name="account_org_required_unless_superadmin",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)

    def has_role(self, role: str) -> bool:
        return self.is_active and ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def totp_enabled(self) -> bool:
        """Read through the relation's cache, so listing views can prefetch it in one query."""
        return any(device.confirmed for device in self.totpdevice_set.all())


SESSION_TOKEN_PREFIX = "kw_sess_"  # noqa: S105 - a public prefix, not a secret


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionTokenQuerySet(models.QuerySet):
    def live(self, now: datetime | None = None) -> "SessionTokenQuerySet":
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())

    def revoke(self) -> int:
        return self.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


class SessionToken(models.Model):
    """An admin API session. Only the SHA-256 of the opaque token is stored; the prefix is for display."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="session_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    otp_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = SessionTokenQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["account", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.account_id})"

    @staticmethod
    def new_token() -> str:
        return SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_hash, hash_token(token))

    def is_live(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())


class SignInCounter(models.Model):
    """Sign-in attempts (and refusals) of one key in one fixed window, kept in the database.

    The database, not the cache, is the source of truth, so a lockout survives a Redis flush or
    restart. `key_hash` is a SHA-256 of the key's value (an email as typed, an address bucket):
    the table never holds an identifier that might be a misplaced password.
    """

    kind = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64)
    period = models.BigIntegerField(help_text="The window's index: seconds since the epoch // window length.")
    attempts = models.IntegerField(default=0)
    refusals = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "key_hash", "period"], name="sign_in_counter_unique"),
        ]
        indexes = [models.Index(fields=["period"], name="sign_in_counter_period")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key_hash[:8]}@{self.period} ({self.attempts})"


class PendingSignup(models.Model):
    """A sign-up waiting for its email to be confirmed. Only the link token's SHA-256 and the
    password's hash are stored; the org and its owner are created when the token comes back."""

    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField(max_length=254)
    org_name = models.CharField(max_length=200)
    password_hash = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="pending_signup_expiry")]

    def __str__(self) -> str:
        return f"{self.email} (until {self.expires_at:%Y-%m-%d %H:%M})"
