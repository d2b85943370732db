"""The built-in dev IdP: in dev mode every org can mint end-user tokens without a real IdP.

Its issuer is `<KEYWARD_ISSUER>/dev-idp/<org slug>` and its audience `keyward`. Outside dev mode
it neither issues nor verifies anything, even if a dev connector row exists.
"""

import time
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction

from keyward.core.exceptions import Forbidden
from keyward.crypto.signing import load_es256_key, new_es256_key, sign_compact
from keyward.idp.issuers import claim_issuer
from keyward.idp.models import DevIdpKey, IdpConnector, IdpKind
from keyward.tenancy.models import Org

DEV_AUDIENCE = "keyward"
DEV_ALGORITHM = "ES256"
DEV_MAX_TTL_SECONDS = 24 * 3600


def dev_issuer_prefix() -> str:
    """Every dev IdP issuer starts with this; no other connector may use an issuer under it."""
    return f"{settings.KEYWARD_ISSUER}/dev-idp/"


def dev_issuer(org: Org) -> str:
    return f"{dev_issuer_prefix()}{org.slug}"


def _require_dev_mode() -> None:
    if not settings.DEV_MODE:
        raise Forbidden("The built-in dev IdP exists only in dev mode.", code="dev_mode_only")


def ensure_dev_idp(org: Org) -> IdpConnector:
    """The org's dev IdP connector with its key, created on first use (safe when two callers race)."""
    _require_dev_mode()
    existing = _dev_connector(org)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            claim_issuer(org, dev_issuer(org))
            connector = IdpConnector.objects.create(
                org=org,
                name="dev",
                kind=IdpKind.DEV,
                issuer=dev_issuer(org),
                audience=DEV_AUDIENCE,
                allowed_algorithms=[DEV_ALGORITHM],
            )
            material = new_es256_key()
            key = DevIdpKey(connector=connector, kid=material.kid, public_jwk=material.public_jwk)
            key.seal_secret(material.private_der)
            key.save()
    except IntegrityError:
        existing = _dev_connector(org)
        if existing is None:
            raise
        return existing
    return _dev_connector(org)


def _dev_connector(org: Org) -> IdpConnector | None:
    return IdpConnector.objects.select_related("org", "dev_key").filter(org=org, kind=IdpKind.DEV).first()


def issue_dev_user_token(org: Org, *, subject: str, ttl_seconds: int = 3600, email: str | None = None) -> str:
    """An end-user identity token from the org's dev IdP, as a real IdP would issue one."""
    if not 1 <= ttl_seconds <= DEV_MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1 second and {DEV_MAX_TTL_SECONDS // 3600} hours")
    connector = ensure_dev_idp(org)
    now = int(time.time())
    claims = {
        "iss": connector.issuer,
        "aud": connector.audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if email or "@" in subject:
        claims["email"] = email or subject
    private = load_es256_key(connector.dev_key.unseal_secret())
    return sign_compact(claims, key=private, kid=connector.dev_key.kid, typ="application/JWT")
