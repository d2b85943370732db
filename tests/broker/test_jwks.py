"""GET /v1/jwks: public, cacheable, public members only, and enough for an independent verifier."""

import time
from datetime import timedelta

import jwt
import pytest

from keyward.crypto import signing
from keyward.crypto.models import SigningKey
from keyward.jose.types import TokenType

pytestmark = pytest.mark.django_db

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


def fetch_jwks(api) -> dict:
    response = api.get("/v1/jwks")
    assert response.status_code == 200
    return response.json()


def verify_independently(token: str, jwks: dict) -> dict:
    """What a customer's service does with PyJWT and nothing but the published JWKS."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(token, key=key, algorithms=["ES256"], audience="stripe", issuer="http://localhost:8000")


def sign(sub: str = "alice", token_type: TokenType = TokenType.CREDENTIAL) -> str:
    now = int(time.time())
    claims = {"iss": "http://localhost:8000", "aud": "stripe", "sub": sub, "iat": now, "nbf": now, "exp": now + 300}
    return signing.sign_token(claims, token_type)


def test_jwks_is_public_cacheable_and_announces_a_key_before_any_token(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-session")
    response = api.get("/v1/jwks")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["Content-Type"].startswith("application/json")
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kid"] == SigningKey.objects.get().kid


def test_jwks_holds_public_members_only(api):
    sign()
    signing.rotate_signing_key()
    response = api.get("/v1/jwks")
    for jwk in response.json()["keys"]:
        assert set(jwk) == {"kid", "kty", "crv", "x", "y", "use", "alg"}
        assert (jwk["use"], jwk["alg"]) == ("sig", "ES256")
        for member in PRIVATE_MEMBERS:
            assert member not in jwk
    assert b'"d"' not in response.content


def test_only_get_is_allowed(api):
    assert api.post("/v1/jwks", {}, format="json").status_code == 405


def test_tokens_verify_with_pyjwt_and_the_published_jwks_across_a_rotation(api):
    before = sign("before-rotation")
    assert verify_independently(before, fetch_jwks(api))["sub"] == "before-rotation"
    assert jwt.get_unverified_header(before)["typ"] == "kw-cred+jwt"

    signing.rotate_signing_key()
    after = sign("after-rotation", TokenType.DELEGATION)
    jwks_after = fetch_jwks(api)
    assert verify_independently(before, jwks_after)["sub"] == "before-rotation"
    assert verify_independently(after, jwks_after)["sub"] == "after-rotation"
    assert jwt.get_unverified_header(after)["typ"] == "kw-deleg+jwt"
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]


def test_a_retired_key_leaves_the_jwks(api):
    old_token = sign()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    signing.rotate_signing_key()
    retire_after = SigningKey.objects.get(kid=old_kid).retire_after
    assert old_kid in [key["kid"] for key in fetch_jwks(api)["keys"]]

    assert signing.retire_expired_keys(now=retire_after + timedelta(seconds=1)) == [old_kid]
    jwks = fetch_jwks(api)
    assert old_kid not in [key["kid"] for key in jwks["keys"]]
    with pytest.raises(KeyError):
        verify_independently(old_token, jwks)
    assert verify_independently(sign(), jwks)["sub"] == "alice"


def test_a_forged_or_altered_token_does_not_verify(api):
    token = sign()
    header, _payload, signature = token.split(".")
    altered = jwt.api_jws.base64url_encode(b'{"sub":"mallory","aud":"stripe","exp":9999999999}').decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify_independently(f"{header}.{altered}.{signature}", fetch_jwks(api))


def test_jwks_is_in_the_openapi_schema(api):
    response = api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    operation = response.json()["paths"]["/v1/jwks"]["get"]
    assert "security" not in operation
    assert "Jwks" in response.json()["components"]["schemas"]
