"""Keys, tokens and a real JWKS server on 127.0.0.1 for the JWT verification tests.

Tokens are made with PyJWT (an independent implementation) where it allows; attacks PyJWT refuses
to produce are built by hand with `raw_token` (tests/jose/tokens.py, shared with tests/security).
"""

from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyward.jose.jwks import JwksKeySource, clear_jwks_cache
from tests import local_http
from tests.jose.tokens import SigningKey
from tests.local_http import LocalServer
from tests.net import drip

NOW = 1_800_000_000
ISSUER = "https://idp.example.com/"
AUDIENCE = "keyward-broker"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MARKER = "MARKER-alice-private-claim"

fake_dns = local_http.fake_dns
drip_server = drip.drip_server
local_server = local_http.local_server
loopback_only = local_http.loopback_only


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey("ec-256", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def ec384_key() -> SigningKey:
    return SigningKey("ec-384", "ES384", ec.generate_private_key(ec.SECP384R1()))


@pytest.fixture(scope="session")
def ec521_key() -> SigningKey:
    return SigningKey("ec-521", "ES512", ec.generate_private_key(ec.SECP521R1()))


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return SigningKey("attacker", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid set of claims at NOW; an override of None removes the claim."""
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@example.com",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
        "secret_note": MARKER,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Idp:
    server: LocalServer
    clock: FakeClock
    source: JwksKeySource

    def publish(self, *keys: SigningKey, extra: list[Any] = ()) -> None:
        self.server.respond("/jwks", json_body={"keys": [key.public_jwk for key in keys] + list(extra)})

    @property
    def fetches(self) -> int:
        return self.server.count("/jwks")


@pytest.fixture(autouse=True)
def _dev_outbound(settings, loopback_only):
    """The JWKS servers here are plain http on 127.0.0.1, which only dev mode and the override allow."""
    settings.DEV_MODE = True
    settings.KEYWARD_ALLOW_PRIVATE_URLS = True
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@pytest.fixture
def idp(local_server, rsa_key, ec_key, ec384_key, ec521_key) -> Idp:
    """An identity provider publishing RSA and EC keys over real HTTP, read through a fresh key source."""
    server = local_server()
    clock = FakeClock()
    idp = Idp(server=server, clock=clock, source=JwksKeySource(server.url("/jwks"), clock=clock))
    idp.publish(rsa_key, ec_key, ec384_key, ec521_key)
    return idp
