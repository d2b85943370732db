import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keyward.jose.jwks import clear_jwks_cache
from tests import local_http

local_server = local_http.local_server
loopback_only = local_http.loopback_only


@pytest.fixture(scope="session")
def idp_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def _fresh_jwks_cache():
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@pytest.fixture
def fake_idp(local_server, loopback_only, idp_rsa_key):
    """A real OIDC IdP on 127.0.0.1: discovery document + JWKS, and a way to sign its tokens."""
    server = local_server()
    issuer = server.url("").rstrip("/")
    public = jwt.algorithms.RSAAlgorithm.to_jwk(idp_rsa_key.public_key(), as_dict=True)
    server.respond("/jwks", json_body={"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "RS256"}]})
    server.respond(
        "/.well-known/openid-configuration",
        json_body={
            "issuer": issuer,
            "jwks_uri": server.url("/jwks"),
            "id_token_signing_alg_values_supported": ["RS256"],
        },
    )

    class FakeIdp:
        url = issuer
        jwks_uri = server.url("/jwks")
        discovery_url = server.url("/.well-known/openid-configuration")
        http = server

        def token(self, audience="keyward-broker", sub="alice@example.com", **claims) -> str:
            now = int(time.time())
            body = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + 300, **claims}
            return jwt.encode(body, idp_rsa_key, algorithm="RS256", headers={"kid": "idp-1"})

    return FakeIdp()
