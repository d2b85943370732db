"""Attacks on JWT verification, against keys served by a real JWKS server on 127.0.0.1."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import josepy
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.keys import StaticKeySource
from keyward.jose.types import TokenType
from keyward.jose.verify import MAX_TOKEN_BYTES, verify_jwt
from tests.jose.conftest import ALGORITHMS, AUDIENCE, ISSUER, MARKER, NOW, claims
from tests.jose.tokens import SigningKey, b64, raw_token

pytestmark = pytest.mark.django_db


def verify(token, keys, **options):
    arguments = {"keys": keys, "algorithms": ALGORITHMS, "issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    arguments.update(options)
    return verify_jwt(token, **arguments)


def refused(token, keys, reason: TokenFailure, **options) -> TokenInvalid:
    """Assert the token is refused for `reason`, and that the error repeats nothing from the token."""
    with pytest.raises(TokenInvalid) as caught:
        verify(token, keys, **options)
    error = caught.value
    assert error.reason == reason
    text = str(error)
    assert MARKER not in text
    if isinstance(token, str):
        for part in token.split("."):
            assert len(part) < 6 or part[:6] not in text
    return error


def with_parts(token: str, *, header=None, payload=None, signature=None) -> str:
    parts = token.split(".")
    replaced = [header, payload, signature]
    return ".".join(new if new is not None else old for old, new in zip(parts, replaced, strict=True))


def header_of(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(josepy.b64.b64decode(segment))


# --- what must work ------------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key", "ec384_key", "ec521_key"])
def test_rsa_and_ec_tokens_verify(request, idp, key_name):
    key = request.getfixturevalue(key_name)
    verified = verify(key.sign(claims()), idp.source)
    assert verified["sub"] == "alice@example.com"
    assert idp.fetches == 1


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "PS384", "PS512"])
def test_other_rsa_algorithms_verify(idp, rsa_key, alg):
    assert verify(rsa_key.sign(claims(), alg=alg), idp.source)["iss"] == ISSUER


def test_a_token_as_bytes_verifies(idp, rsa_key):
    assert verify(rsa_key.sign(claims()).encode(), idp.source)["aud"] == AUDIENCE


def test_an_audience_list_containing_ours_verifies(idp, rsa_key):
    assert verify(rsa_key.sign(claims(aud=["other", AUDIENCE])), idp.source)["aud"] == ["other", AUDIENCE]


def test_a_token_without_kid_uses_a_single_key_source_only(idp, rsa_key):
    token = raw_token({"alg": "RS256", "typ": "JWT"}, claims(), rsa_key, "RS256")
    assert verify(token, StaticKeySource({"only": josepy.JWK.load(rsa_key.private_pem)}))["sub"]
    refused(token, idp.source, TokenFailure.UNKNOWN_KID)  # four keys published: no guessing


def test_required_claims_are_enforced(idp, rsa_key):
    token = rsa_key.sign(claims(jti=None))
    assert verify(token, idp.source, required_claims=["sub"])
    refused(token, idp.source, TokenFailure.MISSING_CLAIM, required_claims=["sub", "jti"])


# --- algorithm attacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(idp, rsa_key, alg):
    unsigned = f"{b64({'alg': alg, 'kid': rsa_key.kid})}.{b64(claims())}."
    refused(unsigned, idp.source, TokenFailure.MALFORMED)
    with_fake_signature = unsigned + "AAAA"
    refused(with_fake_signature, idp.source, TokenFailure.ALG_NOT_ALLOWED)
    assert idp.fetches == 0


@pytest.mark.parametrize("alg", ["none", "HS256", "HS384", "HS512", "EdDSA", "RS1"])
def test_hmac_none_and_unknown_algorithms_can_never_be_allowed(idp, alg):
    with pytest.raises(ValueError, match="can never be allowed"):
        verify("a.b.c", idp.source, algorithms=["RS256", alg])


def test_an_empty_allow_list_is_a_configuration_error(idp):
    with pytest.raises(ValueError, match="at least one"):
        verify("a.b.c", idp.source, algorithms=[])


def _public_key_secrets(rsa_key) -> dict[str, bytes]:
    public = rsa_key.private.public_key()
    return {
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(rsa_key.public_jwk).encode(),
    }


@pytest.mark.parametrize("secret_form", ["pem", "pkcs1", "der", "jwk"])
@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hmac_signed_with_the_rsa_public_key_is_refused(idp, rsa_key, secret_form, alg):
    secret = _public_key_secrets(rsa_key)[secret_form]
    signing_input = f"{b64({'alg': alg, 'kid': rsa_key.kid, 'typ': 'JWT'})}.{b64(claims())}"
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    forged = f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), digest).digest())}"
    refused(forged, idp.source, TokenFailure.ALG_NOT_ALLOWED)
    assert idp.fetches == 0  # refused from the header alone


def test_a_symmetric_key_from_a_key_source_is_never_used(rsa_key):
    source = StaticKeySource({"sym": josepy.JWKOct(key=b"shared-secret-bytes")})
    token = raw_token({"alg": "RS256", "kid": "sym"}, claims(), rsa_key, "RS256")
    refused(token, source, TokenFailure.KEY_MISMATCH)


def test_the_algorithm_must_fit_the_key_type(idp, rsa_key, ec_key, ec384_key):
    rsa_signed_under_ec_kid = raw_token({"alg": "RS256", "kid": ec_key.kid}, claims(), rsa_key, "RS256")
    refused(rsa_signed_under_ec_kid, idp.source, TokenFailure.KEY_MISMATCH)
    es256_claimed_for_p384_key = raw_token({"alg": "ES256", "kid": ec384_key.kid}, claims(), ec384_key, "ES256")
    refused(es256_claimed_for_p384_key, idp.source, TokenFailure.KEY_MISMATCH)
    ec_signed_under_rsa_kid = raw_token({"alg": "ES256", "kid": rsa_key.kid}, claims(), ec_key, "ES256")
    refused(ec_signed_under_rsa_kid, idp.source, TokenFailure.KEY_MISMATCH)


def test_an_algorithm_outside_the_allow_list_is_refused(idp, rsa_key, ec_key):
    refused(rsa_key.sign(claims(), alg="PS256"), idp.source, TokenFailure.ALG_NOT_ALLOWED, algorithms=["RS256"])
    refused(ec_key.sign(claims()), idp.source, TokenFailure.ALG_NOT_ALLOWED, algorithms=["RS256"])


def test_a_weak_rsa_key_is_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  (the point of the test)
    jwk = josepy.JWKRSA(key=weak)
    token = raw_token({"alg": "RS256", "kid": "weak"}, claims(), SigningKey("weak", "RS256", weak), "RS256")
    refused(token, StaticKeySource({"weak": jwk}), TokenFailure.KEY_MISMATCH)


# --- key selection: only the configured source, never the token ----------------------------------


def test_jku_x5u_and_jwk_headers_are_never_followed_or_used(idp, local_server, attacker_key, rsa_key):
    attacker = local_server()
    attacker.respond("/jwks", json_body={"keys": [attacker_key.public_jwk]})
    attacker.respond("/cert.pem", body=b"-----BEGIN CERTIFICATE-----")
    injected = {
        "jku": attacker.url("/jwks"),
        "x5u": attacker.url("/cert.pem"),
        "jwk": attacker_key.public_jwk,
        "x5c": [b64(b"not a certificate")],
    }
    own_kid = attacker_key.sign(claims(), headers=injected)
    refused(own_kid, idp.source, TokenFailure.UNKNOWN_KID)
    borrowed_kid = attacker_key.sign(claims(), headers={**injected, "kid": rsa_key.kid})
    refused(borrowed_kid, idp.source, TokenFailure.BAD_SIGNATURE)
    embedded_jwk_no_kid = raw_token({"alg": "RS256", "jwk": attacker_key.public_jwk}, claims(), attacker_key, "RS256")
    refused(embedded_jwk_no_kid, idp.source, TokenFailure.UNKNOWN_KID)
    assert attacker.count() == 0


def test_a_genuine_token_carrying_jku_still_verifies_without_a_fetch(idp, local_server, rsa_key):
    elsewhere = local_server()
    token = rsa_key.sign(claims(), headers={"jku": elsewhere.url("/jwks"), "x5u": elsewhere.url("/x")})
    assert verify(token, idp.source)["sub"]
    assert elsewhere.count() == 0


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "jku"])
def test_crit_headers_are_refused(idp, rsa_key, crit):
    token = rsa_key.sign(claims(), headers={"crit": crit, "b64": True})
    refused(token, idp.source, TokenFailure.UNSUPPORTED_HEADER)


@pytest.mark.parametrize("kid", [5, "", "k" * 300, ["rsa-1"]])
def test_a_malformed_kid_is_refused(idp, rsa_key, kid):
    token = raw_token({"alg": "RS256", "kid": kid}, claims(), rsa_key, "RS256")
    refused(token, idp.source, TokenFailure.MALFORMED)


# --- tampering -----------------------------------------------------------------------------------


def test_a_tampered_payload_is_refused(idp, rsa_key):
    token = rsa_key.sign(claims())
    refused(with_parts(token, payload=b64(claims(sub="mallory@example.com"))), idp.source, TokenFailure.BAD_SIGNATURE)
    refused(with_parts(token, payload=b64(claims(exp=NOW + 10**6))), idp.source, TokenFailure.BAD_SIGNATURE)


def test_a_tampered_header_is_refused(idp, rsa_key):
    token = rsa_key.sign(claims())
    header = header_of(token)
    refused(with_parts(token, header=b64({**header, "typ": "at+jwt"})), idp.source, TokenFailure.BAD_SIGNATURE)
    refused(with_parts(token, header=b64({**header, "alg": "RS512"})), idp.source, TokenFailure.BAD_SIGNATURE)
    refused(with_parts(token, header=b64({**header, "alg": "PS256"})), idp.source, TokenFailure.BAD_SIGNATURE)


def test_a_signature_by_another_key_with_the_same_kid_is_refused(idp, attacker_key, rsa_key):
    impostor = attacker_key.sign(claims(), headers={"kid": rsa_key.kid})
    refused(impostor, idp.source, TokenFailure.BAD_SIGNATURE)


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
def test_a_flipped_signature_bit_is_refused(request, idp, key_name):
    token = request.getfixturevalue(key_name).sign(claims())
    signature = bytearray(josepy.b64.b64decode(token.split(".")[2]))
    signature[len(signature) // 2] ^= 0x01
    refused(with_parts(token, signature=b64(bytes(signature))), idp.source, TokenFailure.BAD_SIGNATURE)


def test_an_ecdsa_signature_in_der_form_is_refused(idp, ec_key):
    token = ec_key.sign(claims())
    signing_input = token.rsplit(".", 1)[0].encode()
    der = ec_key.private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    refused(with_parts(token, signature=b64(der)), idp.source, TokenFailure.BAD_SIGNATURE)


# --- malformed, truncated, oversized ----------------------------------------------------------------


def test_truncated_tokens_are_refused(idp, rsa_key):
    token = rsa_key.sign(claims())
    for cut in (1, 2, 3, 4, 10, 100):
        with pytest.raises(TokenInvalid) as caught:
            verify(token[:-cut], idp.source)
        assert caught.value.reason in {TokenFailure.MALFORMED, TokenFailure.BAD_SIGNATURE}
    refused(token.rsplit(".", 1)[0], idp.source, TokenFailure.MALFORMED)
    refused(token.rsplit(".", 1)[0] + ".", idp.source, TokenFailure.MALFORMED)
    refused(token[: token.index(".") + 5], idp.source, TokenFailure.MALFORMED)


def test_an_oversized_token_is_refused_before_any_key_fetch(idp, rsa_key):
    token = rsa_key.sign(claims(padding="p" * MAX_TOKEN_BYTES))
    refused(token, idp.source, TokenFailure.TOO_LARGE)
    refused(token.encode(), idp.source, TokenFailure.TOO_LARGE)
    refused("a" * (10 * MAX_TOKEN_BYTES), idp.source, TokenFailure.TOO_LARGE)
    assert idp.fetches == 0


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "....",
        "..",
        "!!!!.????.****",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln=",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2l+",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2l/",
        " eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n",
        "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "ëyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    ],
)
def test_garbage_is_malformed(idp, garbage):
    refused(garbage, idp.source, TokenFailure.MALFORMED)
    assert idp.fetches == 0


@pytest.mark.parametrize("not_a_token", [None, 12345, ["a", "b", "c"], b"\xff\xfe.a.b"])
def test_values_that_are_not_tokens_are_malformed(idp, not_a_token):
    refused(not_a_token, idp.source, TokenFailure.MALFORMED)


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"[1, 2]",
        b'"RS256"',
        b"42",
        b"null",
        b'{"alg": "none", "alg": "RS256"}',
        b"\xff\xfe{}",
        b'{"alg": "RS256", "x": NaN}',
    ],
)
def test_a_header_that_is_not_a_json_object_is_malformed(idp, header):
    refused(f"{b64(header)}.{b64(claims())}.c2lnbmF0dXJl", idp.source, TokenFailure.MALFORMED)


def test_a_non_canonical_base64_segment_is_malformed(idp, rsa_key):
    token = rsa_key.sign(claims())
    signature = token.split(".")[2]
    last = signature[-1]
    # 256-byte RSA signature: the final character carries 4 unused bits; setting one is a second spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(last) ^ 0x01]
    refused(with_parts(token, signature=signature[:-1] + sibling), idp.source, TokenFailure.MALFORMED)


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"claims"', b"not json", b'{"exp": NaN}', b"[" * 5000 + b"]" * 5000, b'{"a":1,"a":2}'],
)
def test_a_signed_payload_that_is_not_a_json_object_is_malformed(idp, rsa_key, payload):
    token = raw_token({"alg": "RS256", "kid": rsa_key.kid}, payload, rsa_key, "RS256")
    assert len(token) <= MAX_TOKEN_BYTES
    refused(token, idp.source, TokenFailure.MALFORMED)


# --- time ------------------------------------------------------------------------------------------


def test_an_expired_token_is_refused(idp, rsa_key):
    refused(rsa_key.sign(claims(exp=NOW - 31)), idp.source, TokenFailure.EXPIRED)
    assert verify(rsa_key.sign(claims(exp=NOW - 29)), idp.source)  # within the 30 s default leeway
    refused(rsa_key.sign(claims(exp=NOW)), idp.source, TokenFailure.EXPIRED, leeway=0)


@pytest.mark.parametrize("exp", [None, "tomorrow", True, [NOW + 60], {"at": NOW}])
def test_exp_is_required_and_numeric(idp, rsa_key, exp):
    reason = TokenFailure.MISSING_CLAIM if exp is None else TokenFailure.MALFORMED
    refused(rsa_key.sign(claims(exp=exp)), idp.source, reason)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024], ids=["1e400", "-1e400", "2^1024"])
def test_a_time_claim_beyond_float_range_is_malformed_not_a_crash(idp, rsa_key, name, value):
    """JSON integers are unbounded; one float() cannot hold must be a refusal, not an OverflowError."""
    refused(rsa_key.sign(claims(**{name: value})), idp.source, TokenFailure.MALFORMED)


def test_a_token_not_yet_valid_is_refused(idp, rsa_key):
    refused(rsa_key.sign(claims(nbf=NOW + 31)), idp.source, TokenFailure.NOT_YET_VALID)
    assert verify(rsa_key.sign(claims(nbf=NOW + 29)), idp.source)


def test_a_token_issued_in_the_future_is_refused(idp, rsa_key):
    refused(rsa_key.sign(claims(iat=NOW + 31, nbf=None)), idp.source, TokenFailure.ISSUED_IN_FUTURE)
    refused(rsa_key.sign(claims(iat=NOW + 3600, nbf=None, exp=NOW + 7200)), idp.source, TokenFailure.ISSUED_IN_FUTURE)
    assert verify(rsa_key.sign(claims(iat=NOW + 29, nbf=None)), idp.source)


def test_now_may_be_an_aware_datetime(idp, rsa_key):
    token = rsa_key.sign(claims())
    assert verify(token, idp.source, now=datetime.fromtimestamp(NOW, UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(token, idp.source, now=datetime(2027, 1, 1))


@pytest.mark.parametrize("leeway", [121, -1, timedelta(minutes=5)])
def test_leeway_is_bounded(idp, rsa_key, leeway):
    with pytest.raises(ValueError, match="leeway"):
        verify(rsa_key.sign(claims()), idp.source, leeway=leeway)


def test_leeway_up_to_the_cap_is_honoured(idp, rsa_key):
    token = rsa_key.sign(claims(exp=NOW - 100))
    assert verify(token, idp.source, leeway=timedelta(seconds=120))
    refused(token, idp.source, TokenFailure.EXPIRED, leeway=60)


# --- issuer and audience ------------------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example.com/", "https://idp.example.com", "HTTPS://IDP.EXAMPLE.COM/", 7])
def test_a_wrong_issuer_is_refused(idp, rsa_key, iss):
    token = raw_token({"alg": "RS256", "kid": rsa_key.kid}, claims(iss=iss), rsa_key, "RS256")
    refused(token, idp.source, TokenFailure.WRONG_ISSUER)


def test_a_missing_issuer_is_refused(idp, rsa_key):
    refused(rsa_key.sign(claims(iss=None)), idp.source, TokenFailure.MISSING_CLAIM)


@pytest.mark.parametrize("aud", ["other-service", "keyward-broker-evil", "keyward", [], ["other"], [f"{AUDIENCE} "]])
def test_a_wrong_audience_is_refused(idp, rsa_key, aud):
    refused(rsa_key.sign(claims(aud=aud)), idp.source, TokenFailure.WRONG_AUDIENCE)


@pytest.mark.parametrize("aud", [[AUDIENCE, 5], {"aud": AUDIENCE}, 5])
def test_a_malformed_audience_is_refused(idp, rsa_key, aud):
    refused(rsa_key.sign(claims(aud=aud)), idp.source, TokenFailure.MALFORMED)


def test_a_missing_audience_is_refused(idp, rsa_key):
    refused(rsa_key.sign(claims(aud=None)), idp.source, TokenFailure.MISSING_CLAIM)


@pytest.mark.parametrize(("issuer", "audience"), [("", AUDIENCE), (ISSUER, ""), (None, AUDIENCE)])
def test_an_empty_expected_issuer_or_audience_is_a_configuration_error(idp, rsa_key, issuer, audience):
    with pytest.raises(ValueError, match="non-empty"):
        verify(rsa_key.sign(claims()), idp.source, issuer=issuer, audience=audience)


# --- token types: a credential, a delegation token and a user token never stand in for each other ---


def test_keyward_token_types_are_checked_exactly(idp, ec_key):
    credential = ec_key.sign(claims(), headers={"typ": TokenType.CREDENTIAL})
    delegation = ec_key.sign(claims(), headers={"typ": TokenType.DELEGATION})
    assert verify(credential, idp.source, token_type=TokenType.CREDENTIAL)
    assert verify(delegation, idp.source, token_type=TokenType.DELEGATION)
    refused(credential, idp.source, TokenFailure.WRONG_TYPE, token_type=TokenType.DELEGATION)
    refused(delegation, idp.source, TokenFailure.WRONG_TYPE, token_type=TokenType.CREDENTIAL)


@pytest.mark.parametrize(
    "typ", ["kw-cred+jwt", "kw-deleg+jwt", "application/kw-cred+jwt", "KW-DELEG+JWT", "Application/KW-Cred+JWT"]
)
def test_keyward_tokens_are_never_accepted_as_user_tokens(idp, ec_key, typ):
    refused(ec_key.sign(claims(), headers={"typ": typ}), idp.source, TokenFailure.WRONG_TYPE)


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "kw-cred+jwt2"])
def test_a_keyward_type_must_be_present_when_expected(idp, ec_key, typ):
    token = ec_key.sign(claims(), headers={"typ": typ})
    refused(token, idp.source, TokenFailure.WRONG_TYPE, token_type=TokenType.DELEGATION)


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "application/jwt"])
def test_third_party_types_pass_as_user_tokens(idp, rsa_key, typ):
    assert verify(rsa_key.sign(claims(), headers={"typ": typ}), idp.source)


def test_a_non_string_typ_is_malformed(idp, ec_key):
    token = raw_token({"alg": "ES256", "kid": ec_key.kid, "typ": ["kw-cred+jwt"]}, claims(), ec_key, "ES256")
    refused(token, idp.source, TokenFailure.MALFORMED)
    refused(token, idp.source, TokenFailure.MALFORMED, token_type=TokenType.CREDENTIAL)
