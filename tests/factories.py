"""Small factories for test data. Each call makes new, unique rows."""

import itertools
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core import mail

from keyward.accounts import services
from keyward.accounts.models import Account, Role
from keyward.audit.models import AuditEvent
from keyward.audit.writer import record_event
from keyward.policies.models import Policy
from keyward.tenancy.models import Org

_counter = itertools.count(1)
PASSWORD = "a long enough test passphrase"


def make_org(name: str | None = None, **fields) -> Org:
    n = next(_counter)
    return Org.objects.create(name=name or f"Org {n}", slug=f"org-{n}", **fields)


def make_account(org: Org | None = None, role: str = Role.VIEWER, email: str | None = None, **fields) -> Account:
    if org is None and role != Role.SUPERADMIN:
        org = make_org()
    account = Account.objects.create_account(
        email=email or f"user{next(_counter)}@example.com", password=PASSWORD, org=org, role=role
    )
    for name, value in fields.items():
        setattr(account, name, value)
    if fields:
        account.save()
    return account


def make_session_token(account: Account, *, otp_verified: bool = False) -> str:
    return services.start_session(account, ip="127.0.0.1", otp_verified=otp_verified).token


def make_audit_events(org: Org | None, count: int = 1, **facts) -> list[AuditEvent]:
    """Append `count` events to an org's audit chain (the platform chain when org is None)."""
    fields = {"event_type": "test.event", "outcome": "success", **facts}
    return [record_event(org=org, **fields) for _ in range(count)]


def make_policy(org: Org, effect: str = "allow", **fields) -> Policy:
    """A policy row as stored (no service validation), e.g. make_policy(org, "deny", provider="stripe")."""
    return Policy.objects.create(org=org, effect=effect, **fields)


def make_rsa_private_key_pem(bits: int = 2048) -> str:
    """A fresh, unencrypted RSA private key in PEM, as GitHub hands out for an app."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def repoint_provider(provider, config: dict):
    """Move a provider to a new config the way an admin must when its URL changes: with the secret again."""
    from keyward.providers.services import current_secret, rotate_secret

    return rotate_secret(provider, secret=current_secret(provider).decode(), config=config)


SIGNUP_TOKEN = re.compile(r"kw_signup_[A-Za-z0-9_-]+")


def signup_token_from_mail(email: str) -> str:
    """The confirmation token of the last sign-up email sent to `email` (tests use the locmem backend)."""
    for message in reversed(mail.outbox):
        if email.strip().lower() in [to.lower() for to in message.to]:
            found = SIGNUP_TOKEN.search(message.body)
            assert found, f"the last email to {email} holds no sign-up token: {message.subject!r}"
            return found.group()
    raise AssertionError(f"no email was sent to {email}")


def sign_up(client, *, org_name: str = "Acme Corp", email: str, password: str = PASSWORD):
    """Sign up as a person does: ask (202), read the token from the email, confirm (201 with a session)."""
    requested = client.post("/auth/signup", {"org_name": org_name, "email": email, "password": password}, format="json")
    if requested.status_code != 202:
        return requested
    return client.post("/auth/signup/confirm", {"token": signup_token_from_mail(email)}, format="json")
