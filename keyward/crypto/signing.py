"""keyward's own signing keys: signing tokens, rotating keys, and publishing them as a JWKS.

A key is active (signs), then retiring (still published, so tokens it signed keep verifying),
then retired (gone from the JWKS) once every token it can have signed has expired. Every token
keyward signs lives at most KEYWARD_MAX_CREDENTIAL_TTL, which is what makes that schedule safe.
"""

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import josepy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from keyward.crypto import signals
from keyward.crypto.models import KID_MAX_LENGTH, SigningKey, SigningKeyState
from keyward.jose.types import TokenType

ALGORITHM = "ES256"
PUBLIC_JWK_MEMBERS = ("kty", "crv", "x", "y")
PUBLISHED_STATES = (SigningKeyState.ACTIVE, SigningKeyState.RETIRING)
# Covers clock skew and a token signed with the old key just as the rotation committed.
RETIRE_LEEWAY = timedelta(minutes=5)
_ROTATION_ATTEMPTS = 3
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]+")

# Unsealed private keys by kid, so the hot path does not unseal on every token.
_private_keys: dict[str, josepy.JWKEC] = {}
_private_keys_lock = threading.Lock()


class TokenLifetimeError(ValueError):
    """The claims ask for a token that outlives KEYWARD_MAX_CREDENTIAL_TTL (or has no `exp`)."""


@dataclass(frozen=True)
class Rotation:
    active: SigningKey
    retiring: SigningKey | None


def sign_token(claims: dict, token_type: TokenType) -> str:
    """A compact JWS over `claims`, header `{alg: ES256, kid, typ}`, signed by the active key."""
    token_type = TokenType(token_type)
    _check_lifetime(claims)
    kid, private = _active_signer()
    return sign_compact(claims, key=private, kid=kid, typ=f"application/{token_type.value}")


def sign_compact(claims: dict, *, key: josepy.JWKEC, kid: str, typ: str) -> str:
    """ES256 compact JWS with a protected `{alg, kid, typ}` header (keyward's tokens and the dev IdP's).

    `typ` is a media type; josepy writes it without its `application/` prefix (RFC 7515 §4.1.9).
    """
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    jws = josepy.JWS.sign(
        payload,
        key=key,
        alg=josepy.ES256,
        include_jwk=False,
        protect=frozenset({"alg", "kid", "typ"}),
        kid=kid,
        typ=typ,
    )
    return jws.to_compact().decode()


def active_signing_key() -> SigningKey:
    """The active key, creating the very first one if there is none (safe when several processes race)."""
    key = _find_active_key()
    if key is not None:
        return key
    try:
        with transaction.atomic():
            return _create_key()
    except IntegrityError:
        # Another process created the first key at the same moment; the unique constraint chose it.
        key = _find_active_key()
        if key is None:
            raise
        return key


def rotate_signing_key(*, performed_by: str = "keyward") -> Rotation:
    """Make a new active key; the old one turns retiring, published until its tokens have expired."""
    attempts_left = _ROTATION_ATTEMPTS
    while True:
        try:
            return _rotate_once(performed_by)
        except IntegrityError:
            # A concurrent rotation (or first-key creation) committed an active key first; rotate that one.
            attempts_left -= 1
            if attempts_left == 0:
                raise


@transaction.atomic
def _rotate_once(performed_by: str) -> Rotation:
    now = timezone.now()
    old = SigningKey.objects.select_for_update().filter(state=SigningKeyState.ACTIVE).first()
    detail = {}
    if old is not None:
        old.state = SigningKeyState.RETIRING
        old.retiring_at = now
        old.retire_after = now + timedelta(seconds=settings.KEYWARD_MAX_CREDENTIAL_TTL) + RETIRE_LEEWAY
        old.save(update_fields=["state", "retiring_at", "retire_after"])
        detail = {"retiring_kid": old.kid, "retire_after": old.retire_after.isoformat()}
    active = _create_key()
    signals.announce(signals.SIGNING_KEY_ROTATED, performed_by=performed_by, detail={"kid": active.kid, **detail})
    return Rotation(active=active, retiring=old)


def retire_expired_keys(now: datetime | None = None, *, performed_by: str = "keyward") -> list[str]:
    """Retire every retiring key whose tokens have all expired; returns their kids."""
    now = now or timezone.now()
    with transaction.atomic():
        kids = list(
            SigningKey.objects.select_for_update()
            .filter(state=SigningKeyState.RETIRING, retire_after__lte=now)
            .values_list("kid", flat=True)
        )
        if kids:
            SigningKey.objects.filter(kid__in=kids).update(state=SigningKeyState.RETIRED, retired_at=now)
            signals.announce(signals.SIGNING_KEY_RETIRED, performed_by=performed_by, detail={"kids": kids})
    with _private_keys_lock:
        for kid in kids:
            _private_keys.pop(kid, None)
    return kids


def jwks() -> dict:
    """The public JWK Set: active and retiring keys, public members only. The first key is created here
    if needed, so it is published before it signs anything."""
    active_signing_key()
    keys = SigningKey.objects.filter(state__in=PUBLISHED_STATES).only("kid", "public_jwk")
    return {"keys": [_published_jwk(key.kid, key.public_jwk) for key in keys]}


class SigningKeySource:
    """keyward's own published keys, for verifying tokens keyward signed (e.g. delegation tokens)."""

    algorithms = frozenset({ALGORITHM})

    def key_for(self, kid: str | None) -> josepy.JWK | None:
        """The public key for `kid` if it is active or retiring; None otherwise (retired or unknown).

        keyward's kids are RFC 7638 thumbprints (base64url), so any other kid is unknown without a
        query: a token's kid is attacker input, and PostgreSQL refuses some of it (a NUL) with an error.
        """
        if not kid or len(kid) > KID_MAX_LENGTH or not _THUMBPRINT.fullmatch(kid):
            return None
        public = (
            SigningKey.objects.filter(kid=kid, state__in=PUBLISHED_STATES).values_list("public_jwk", flat=True).first()
        )
        if public is None:
            return None
        return josepy.JWKEC.from_json({member: public[member] for member in PUBLIC_JWK_MEMBERS})


def clear_key_cache() -> None:
    """Forget unsealed private keys (tests; or after an operator replaced key rows by hand)."""
    with _private_keys_lock:
        _private_keys.clear()


def _published_jwk(kid: str, public_jwk: dict) -> dict:
    return {
        **{member: public_jwk[member] for member in PUBLIC_JWK_MEMBERS},
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


def _check_lifetime(claims: dict) -> None:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise TokenLifetimeError("claims must carry an integer `exp`")
    if exp > int(time.time()) + settings.KEYWARD_MAX_CREDENTIAL_TTL:
        raise TokenLifetimeError("`exp` is beyond KEYWARD_MAX_CREDENTIAL_TTL from now")


def _find_active_key() -> SigningKey | None:
    return SigningKey.objects.filter(state=SigningKeyState.ACTIVE).first()


def _active_signer() -> tuple[str, josepy.JWKEC]:
    kid = SigningKey.objects.filter(state=SigningKeyState.ACTIVE).values_list("kid", flat=True).first()
    cached = _private_keys.get(kid) if kid is not None else None
    if cached is not None:
        return kid, cached
    key = active_signing_key()
    return key.kid, _unsealed_private_key(key)


def _unsealed_private_key(key: SigningKey) -> josepy.JWKEC:
    private = load_es256_key(key.unseal_secret())
    if thumbprint(private) != key.kid:
        raise ValueError(f"signing key {key.kid}: the sealed private key does not match its kid")
    with _private_keys_lock:
        _private_keys.clear()  # only the active key signs; older entries are dead weight
        _private_keys[key.kid] = private
    return private


def thumbprint(jwk: josepy.JWK) -> str:
    """RFC 7638 thumbprint of the public key: the kid, so anyone can recompute it from the JWKS."""
    return josepy.b64.b64encode(jwk.public_key().thumbprint()).decode()


@dataclass(frozen=True)
class Es256KeyMaterial:
    """A fresh ES256 key: what to publish (kid, public JWK) and what to seal (PKCS#8 DER)."""

    private: josepy.JWKEC
    kid: str
    public_jwk: dict
    private_der: bytes


def new_es256_key() -> Es256KeyMaterial:
    private = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    public = private.public_key().to_json()
    der = private.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Es256KeyMaterial(
        private=private,
        kid=thumbprint(private),
        public_jwk={member: public[member] for member in PUBLIC_JWK_MEMBERS},
        private_der=der,
    )


def load_es256_key(private_der: bytes) -> josepy.JWKEC:
    return josepy.JWKEC(key=serialization.load_der_private_key(private_der, password=None))


def _create_key() -> SigningKey:
    material = new_es256_key()
    key = SigningKey(kid=material.kid, public_jwk=material.public_jwk, state=SigningKeyState.ACTIVE)
    key.seal_secret(material.private_der)
    key.save()
    return key
