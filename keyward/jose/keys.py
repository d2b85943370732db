"""Where verification keys come from, and which keys fit which signature algorithm.

A key source answers one question, `key_for(kid)`, from keys it was configured with (a JWKS URL,
keyward's own signing keys, a static set). It never looks at anything else in a token.
"""

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import josepy
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import jwa

# Asymmetric algorithms only. HMAC is absent on purpose: with it, anyone holding a public key could
# sign tokens by using the key's bytes as the HMAC secret. "none" is absent for the obvious reason.
SIGNATURE_ALGORITHMS: Mapping[str, jwa.JWASignature] = MappingProxyType(
    {
        "RS256": jwa.RS256,
        "RS384": jwa.RS384,
        "RS512": jwa.RS512,
        "PS256": jwa.PS256,
        "PS384": jwa.PS384,
        "PS512": jwa.PS512,
        "ES256": jwa.ES256,
        "ES384": jwa.ES384,
        "ES512": jwa.ES512,
    }
)
SUPPORTED_ALGORITHMS = frozenset(SIGNATURE_ALGORITHMS)

MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192  # bigger keys only make each verification slower, a cheap denial of service
_EC_CURVE_FOR_ALGORITHM = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@runtime_checkable
class KeySource(Protocol):
    """Anything that can say which public key a `kid` names. None means "no such key"."""

    def key_for(self, kid: str | None) -> josepy.JWK | None: ...


def rsa_key_size_ok(jwk: josepy.JWK) -> bool:
    return isinstance(jwk, josepy.JWKRSA) and MIN_RSA_BITS <= jwk.key.key_size <= MAX_RSA_BITS


def key_fits_algorithm(jwk: josepy.JWK, algorithm: str) -> bool:
    """True when `jwk` is a public key of the type, curve and size that `algorithm` requires."""
    if algorithm[:2] in ("RS", "PS"):
        return (
            isinstance(jwk, josepy.JWKRSA) and isinstance(jwk.key._wrapped, rsa.RSAPublicKey) and rsa_key_size_ok(jwk)
        )
    curve = _EC_CURVE_FOR_ALGORITHM.get(algorithm)
    return (
        curve is not None
        and isinstance(jwk, josepy.JWKEC)
        and isinstance(jwk.key._wrapped, ec.EllipticCurvePublicKey)
        and isinstance(jwk.key.curve, curve)
    )


def select_key(keys: Mapping[str | None, josepy.JWK], kid: str | None) -> josepy.JWK | None:
    """The key named `kid`; a token without `kid` may use a key set holding exactly one key."""
    if kid is not None:
        return keys.get(kid)
    if len(keys) == 1:
        return next(iter(keys.values()))
    return None


class StaticKeySource:
    """A fixed set of public keys (tests, dev, pinned keys). Private keys given are reduced to public."""

    def __init__(self, keys: Mapping[str | None, josepy.JWK] | Iterable[tuple[str | None, josepy.JWK]]):
        pairs = keys.items() if isinstance(keys, Mapping) else keys
        self._keys = {kid: jwk.public_key() for kid, jwk in pairs}

    def key_for(self, kid: str | None) -> josepy.JWK | None:
        return select_key(self._keys, kid)
