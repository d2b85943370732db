"""The issued-credential registry: revoke with cascade, introspect, and introspection keys."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker.minters.keyward_jwt import CREDENTIAL_TYPE as KEYWARD_JWT_TYPE
from broker.models import IntrospectionKey, IssuedCredential
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import AuditContext, record_event
from keyward.crypto.signing import SigningKeySource
from keyward.jose.errors import TokenInvalid
from keyward.jose.types import TokenType
from keyward.jose.verify import peek_claims, verify_jwt
from keyward.tenancy.models import Org

INTROSPECTION_KEY_PREFIX = "kw_intro_"
MAX_CASCADE_LEVELS = 64  # far beyond any org's delegation depth; keeps the walk bounded regardless
AUDITED_JTIS = 50


def revoke(
    credential: IssuedCredential, *, actor=None, audit_context: AuditContext | None = None, reason: str = ""
) -> list[str]:
    """Revoke a credential and every credential delegated from it, in one audited transaction.

    Returns the jtis newly revoked. Revoking twice is harmless (nothing new, still audited).
    """
    now = timezone.now()
    with transaction.atomic():
        family = _with_descendants(credential)
        newly = list(
            IssuedCredential.objects.filter(pk__in=family, revoked_at__isnull=True).values_list("jti", flat=True)
        )
        IssuedCredential.objects.filter(pk__in=family, revoked_at__isnull=True).update(
            revoked_at=now, revoked_reason=reason[:200]
        )
        record_event(
            org=credential.org,
            event_type=events.CREDENTIAL_REVOKED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            end_user=credential.end_user,
            agent=credential.agent.name,
            delegation_chain=credential.chain,
            provider=credential.provider.name,
            scope=credential.scope,
            environment=credential.environment,
            credential_jti=credential.jti,
            detail={"revoked": len(newly), "cascade": newly[:AUDITED_JTIS], "reason": reason[:200]},
        )
    return newly


def _with_descendants(root: IssuedCredential) -> list[int]:
    """The root's id and every descendant's, level by level (a chain is at most a few levels deep)."""
    family, level = [root.pk], [root.pk]
    for _ in range(MAX_CASCADE_LEVELS):
        level = list(IssuedCredential.objects.filter(parent_id__in=level).values_list("pk", flat=True))
        if not level:
            break
        family += level
    return family


@dataclass(frozen=True)
class NewIntrospectionKey:
    key: str
    record: IntrospectionKey


def create_introspection_key(org: Org, *, name: str, actor=None, audit_context=None) -> NewIntrospectionKey:
    """A new key, shown once; only its SHA-256 is stored."""
    key = INTROSPECTION_KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        record = IntrospectionKey.objects.create(
            org=org,
            name=name,
            prefix=key[: len(INTROSPECTION_KEY_PREFIX) + 6],
            key_hash=_hash(key),
            created_by=getattr(actor, "email", ""),
        )
        record_event(
            org=org,
            event_type=events.INTROSPECTION_KEY_CREATED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"name": name, "prefix": record.prefix},
        )
    return NewIntrospectionKey(key=key, record=record)


def revoke_introspection_key(record: IntrospectionKey, *, actor=None, audit_context=None) -> None:
    with transaction.atomic():
        IntrospectionKey.objects.filter(pk=record.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        record_event(
            org=record.org,
            event_type=events.INTROSPECTION_KEY_REVOKED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"name": record.name, "prefix": record.prefix},
        )


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def resolve_introspection_key(key: str) -> IntrospectionKey | None:
    if not key.startswith(INTROSPECTION_KEY_PREFIX) or len(key) > 128:
        return None
    digest = _hash(key)
    record = IntrospectionKey.objects.select_related("org").filter(key_hash=digest, revoked_at__isnull=True).first()
    if record is None or not hmac.compare_digest(record.key_hash, digest):
        return None
    return record


INACTIVE = {"active": False}


def introspect(org: Org, token: str) -> dict:
    """RFC 7662 answer for a keyward-signed credential of `org`; anything else is `{"active": false}`."""
    try:
        audience = peek_claims(token).get("aud")
        if not isinstance(audience, str):
            return INACTIVE
        claims = verify_jwt(
            token,
            keys=SigningKeySource(),
            algorithms=["ES256"],
            issuer=settings.KEYWARD_ISSUER,
            audience=audience,
            token_type=TokenType.CREDENTIAL,
            required_claims=("jti", "sub"),
        )
    except TokenInvalid:
        return INACTIVE
    record = IssuedCredential.objects.select_related("agent").filter(org=org, jti=claims["jti"]).first()
    if record is None or record.revoked_at is not None or record.token_type != KEYWARD_JWT_TYPE:
        return INACTIVE
    answer = {
        "active": True,
        "token_type": "Bearer",
        "client_id": record.agent.name,
        **{
            name: claims[name]
            for name in ("iss", "sub", "aud", "scope", "exp", "iat", "nbf", "jti", "env", "org", "act")
            if name in claims
        },
    }
    return answer
