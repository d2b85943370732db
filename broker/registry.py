"""The issued-credential registry: revoke with cascade (and upstream), introspect, and introspection keys."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker.minters import MintError, minter_for
from broker.minters.keyward_jwt import CREDENTIAL_TYPE as KEYWARD_JWT_TYPE
from broker.models import IntrospectionKey, IssuedCredential, RevocationHandle
from keyward.agents.models import Agent
from keyward.audit import events
from keyward.audit.models import Outcome, chain_key
from keyward.audit.writer import AuditContext, lock_chain_head, record_event
from keyward.crypto.errors import DecryptionError
from keyward.crypto.signing import SigningKeySource
from keyward.jose.errors import TokenInvalid
from keyward.jose.types import TokenType
from keyward.jose.verify import peek_claims, verify_jwt
from keyward.tenancy.models import Org

INTROSPECTION_KEY_PREFIX = "kw_intro_"
MAX_CASCADE_LEVELS = 64  # far beyond any org's delegation depth; keeps the walk bounded regardless
AUDITED_JTIS = 50
AGENT_REVOKED_REASON = "agent revoked"


def revoke(
    credential: IssuedCredential, *, actor=None, audit_context: AuditContext | None = None, reason: str = ""
) -> list[str]:
    """Revoke a credential and every credential delegated from it, in one audited transaction.

    Returns the jtis newly revoked. Revoking twice is harmless (nothing new, still audited).
    Once the transaction commits, credentials of the family that still hold a revocation handle are
    revoked upstream too (`revoke_upstream`); keyward's revocation stands whatever the provider says.
    """
    now = timezone.now()
    with transaction.atomic():
        # First the org's chain lock, which the issuance transaction takes too: a child being issued
        # concurrently either committed already (so the walk below finds it) or re-checks its
        # parent under this lock after we commit (`pipeline._recheck_under_chain_lock`).
        lock_chain_head(chain_key(credential.org))
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
        # After commit, outside any transaction; `robust`: a bug upstream cannot undo or hide the revocation.
        transaction.on_commit(lambda: revoke_upstream(family, actor=actor, audit_context=audit_context), robust=True)
    return newly


def revoke_held_by(agent: Agent, *, actor=None, audit_context: AuditContext | None = None) -> list[str]:
    """Revoke every live credential `agent` holds, each with all that was delegated from it.

    One audit row per family, as `revoke` writes. An agent appears at most once in a chain, so no
    credential it holds descends from another one it holds: each is the root of its own family.
    """
    held = IssuedCredential.objects.select_related("org", "agent", "provider").filter(
        agent=agent, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )
    revoked: list[str] = []
    for credential in held:
        revoked += revoke(credential, actor=actor, audit_context=audit_context, reason=AGENT_REVOKED_REASON)
    return revoked


def keep_revocation_handle(*, org: Org, jti: str, handle: bytes, expires_at) -> None:
    """Seal what revoking credential `jti` upstream will need. Runs in the issuance transaction.

    Handles of the org that have expired (their credentials are dead upstream too) go at the same
    time, so the table only ever holds handles of live credentials, with no scheduler involved.
    """
    RevocationHandle.objects.filter(org=org, expires_at__lte=timezone.now()).delete()
    row = RevocationHandle(credential_id=jti, org=org, expires_at=expires_at)
    row.seal_secret(handle)
    row.save(force_insert=True)


def revoke_upstream(credential_ids: list[int], *, actor=None, audit_context: AuditContext | None = None) -> None:
    """Ask each provider to revoke those of these credentials that hold a revocation handle; audit each answer.

    A handle is deleted once the provider revoked the credential or refused for good (4xx other
    than 429: the token is already dead or can never be revoked). After a timeout, 5xx, 429 or an
    open circuit it stays, so revoking the credential again retries upstream.
    """
    handles = RevocationHandle.objects.select_related("org", "credential__provider", "credential__agent").filter(
        credential__pk__in=credential_ids, credential__revocable_upstream=True
    )
    now = timezone.now()
    for handle in handles:
        if handle.expires_at <= now:
            handle.delete()
            continue
        _revoke_one_upstream(handle, actor=actor, audit_context=audit_context)


def _revoke_one_upstream(handle: RevocationHandle, *, actor, audit_context: AuditContext | None) -> None:
    credential = handle.credential
    status, error = None, ""
    try:
        revoke_with = getattr(minter_for(credential.provider), "revoke", None)
        if revoke_with is None:
            raise MintError("This provider kind cannot revoke upstream.", upstream_error="revoke_not_supported")
        revoke_with(credential, handle.unseal_secret())
    except MintError as exc:
        status, error = exc.upstream_status, exc.upstream_error or "upstream_failed"
    except DecryptionError:
        error = "handle_unreadable"
    final = error in ("", "revoke_not_supported", "handle_unreadable") or (
        status is not None and 400 <= status < 500 and status != 429
    )
    with transaction.atomic():
        if final:
            RevocationHandle.objects.filter(pk=handle.pk).delete()
        record_event(
            org=handle.org,
            event_type=events.CREDENTIAL_UPSTREAM_REVOKED,
            outcome=Outcome.FAILURE if error else Outcome.SUCCESS,
            reason_code=error,
            actor=actor,
            context=audit_context,
            end_user=credential.end_user,
            agent=credential.agent.name,
            delegation_chain=credential.chain,
            provider=credential.provider.name,
            scope=credential.scope,
            environment=credential.environment,
            credential_jti=credential.jti,
            detail={"upstream_status": status, "upstream_error": error},
        )


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
    if record.expires_at <= timezone.now():
        return INACTIVE  # keyward issued it on its own clock: the verifier's leeway for others' clocks does not apply
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
