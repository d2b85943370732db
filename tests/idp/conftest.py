import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keyward.jose.jwks import clear_jwks_cache
from keyward.net import dnstxt
from tests import local_http
from tests.net import drip

drip_server = drip.drip_server
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


@pytest.fixture(autouse=True)
def fake_txt(monkeypatch) -> dict[str, list[str] | Exception]:
    """DNS TXT answers by name (an exception is raised instead); no test here ever queries real DNS."""
    answers: dict[str, list[str] | Exception] = {}

    def txt_records(name: str, **_options) -> list[str]:
        answer = answers.get(name, [])
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    monkeypatch.setattr(dnstxt, "txt_records", txt_records)
    return answers


class FakeIdp:
    """A real OIDC IdP on 127.0.0.1: discovery document + JWKS, and a way to sign its tokens."""

    def __init__(self, server: local_http.LocalServer, key):
        self.http = server
        self.url = server.url("").rstrip("/")
        self.jwks_uri = server.url("/jwks")
        self.discovery_url = server.url("/.well-known/openid-configuration")
        self._key = key
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        server.respond("/jwks", json_body={"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "RS256"}]})
        server.respond(
            "/.well-known/openid-configuration",
            json_body={
                "issuer": self.url,
                "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": ["RS256"],
            },
        )

    def token(self, audience="keyward-broker", sub="alice@example.com", **claims) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": audience, "sub": sub, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": "idp-1"})


@pytest.fixture
def fake_idp(local_server, loopback_only, idp_rsa_key) -> FakeIdp:
    return FakeIdp(local_server(), idp_rsa_key)


@pytest.fixture
def other_idp(local_server, loopback_only, idp_rsa_key) -> FakeIdp:
    """A second IdP: another issuer (another port), for a second org's connectors."""
    return FakeIdp(local_server(), idp_rsa_key)
