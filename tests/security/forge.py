"""Forged, altered and re-signed JWTs: the ways an attacker bends a token to get it past verification.

The token functions take a real token and return a new one; `raw_token` (tests/jose/tokens.py) signs
exactly the bytes asked for, so nothing here is "fixed up" by a JWT library on the way.
"""

import base64
import datetime
import hashlib
import hmac
import json
from typing import Any

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.jose.tokens import SigningKey, b64, raw_token

HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Header, claims and the signature segment of a compact JWS, unverified."""
    header, payload, signature = token.split(".")
    return json.loads(_decode(header)), json.loads(_decode(payload)), signature


def resign(
    token: str,
    key: SigningKey,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """The token with header members and claims replaced (None removes one), signed by `key`."""
    old_header, old_claims, _ = split(token)
    new_header = {name: value for name, value in {**old_header, **(header or {})}.items() if value is not None}
    new_claims = {name: value for name, value in {**old_claims, **(claims or {})}.items() if value is not None}
    return raw_token(new_header, new_claims, key, alg or new_header["alg"])


def unsigned(token: str, alg: str = "none", signature: str = "") -> str:
    """`alg: none` (or a spelling of it) over the real claims, with an empty or arbitrary signature."""
    header, claims, _ = split(token)
    return f"{b64({**header, 'alg': alg})}.{b64(claims)}.{signature}"


def hmac_signed(token: str, secret: bytes, alg: str = "HS256") -> str:
    """Key confusion: an HMAC over the real claims, keyed with bytes the attacker knows (a public key)."""
    header, claims, _ = split(token)
    signing_input = f"{b64({**header, 'alg': alg})}.{b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), HMAC_DIGESTS[alg]).digest()
    return f"{signing_input}.{b64(mac)}"


def tampered(token: str, **claims: Any) -> str:
    """Claims changed after signing; the original signature kept."""
    header, old_claims, signature = split(token)
    return f"{b64(header)}.{b64({**old_claims, **claims})}.{signature}"


def public_key_encodings(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, kid: str) -> dict[str, bytes]:
    """Every form of the verifying key an attacker can fetch from a JWKS and try as an HMAC secret."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    forms = {
        "pem": public_key.public_bytes(serialization.Encoding.PEM, spki),
        "der": public_key.public_bytes(serialization.Encoding.DER, spki),
        "jwk": json.dumps(public_jwk(public_key, kid), separators=(",", ":")).encode(),
    }
    if isinstance(public_key, rsa.RSAPublicKey):
        forms["raw"] = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    else:
        forms["raw"] = public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return forms


def public_jwk(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, kid: str) -> dict[str, Any]:
    """The key as its JWKS publishes it."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {**josepy.JWK.load(pem).to_json(), "kid": kid}


def self_signed_certificate(key: SigningKey, encoding: serialization.Encoding = serialization.Encoding.DER) -> bytes:
    """A certificate for the attacker's key: DER as an `x5c` header carries it, PEM as an `x5u` URL serves it."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private, hashes.SHA256())
    )
    return certificate.public_bytes(encoding)
