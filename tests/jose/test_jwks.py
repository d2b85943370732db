"""The JWKS key source against a real HTTP server: caching, rate-limited refetch, stale-while-error."""

import threading

import josepy
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keyward.jose import jwks
from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.jwks import JwksKeySource, jwks_key_source, parse_jwks
from keyward.jose.verify import verify_jwt
from tests.jose.conftest import ALGORITHMS, AUDIENCE, ISSUER, NOW, claims
from tests.jose.tokens import SigningKey

pytestmark = pytest.mark.django_db


def verify(token, source):
    return verify_jwt(token, keys=source, algorithms=ALGORITHMS, issuer=ISSUER, audience=AUDIENCE, now=NOW)


def refused(token, source, reason):
    with pytest.raises(TokenInvalid) as caught:
        verify(token, source)
    assert caught.value.reason == reason


@pytest.fixture
def new_key() -> SigningKey:
    return SigningKey("rsa-2", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def test_keys_are_cached_for_the_ttl(idp, rsa_key, ec_key):
    for _ in range(5):
        verify(rsa_key.sign(claims()), idp.source)
        verify(ec_key.sign(claims()), idp.source)
    idp.clock.advance(jwks.JWKS_CACHE_TTL - 1)
    verify(rsa_key.sign(claims()), idp.source)
    assert idp.fetches == 1
    idp.clock.advance(1)
    verify(rsa_key.sign(claims()), idp.source)
    assert idp.fetches == 2


def test_an_unknown_kid_refetches_once_then_is_refused(idp, rsa_key, attacker_key):
    verify(rsa_key.sign(claims()), idp.source)
    assert idp.fetches == 1
    idp.clock.advance(jwks.JWKS_MIN_REFETCH_INTERVAL + 1)
    refused(attacker_key.sign(claims()), idp.source, TokenFailure.UNKNOWN_KID)
    assert idp.fetches == 2
    refused(attacker_key.sign(claims(), headers={"kid": "random-1"}), idp.source, TokenFailure.UNKNOWN_KID)
    refused(attacker_key.sign(claims(), headers={"kid": "random-2"}), idp.source, TokenFailure.UNKNOWN_KID)
    assert idp.fetches == 2  # within the rate-limit window: no new fetch
    verify(rsa_key.sign(claims()), idp.source)  # known keys keep working meanwhile
    idp.clock.advance(jwks.JWKS_MIN_REFETCH_INTERVAL)
    refused(attacker_key.sign(claims(), headers={"kid": "random-3"}), idp.source, TokenFailure.UNKNOWN_KID)
    assert idp.fetches == 3


def test_an_unknown_kid_on_a_cold_cache_costs_one_fetch(idp, attacker_key):
    for kid in ("random-1", "random-2", "random-3"):
        refused(attacker_key.sign(claims(), headers={"kid": kid}), idp.source, TokenFailure.UNKNOWN_KID)
    assert idp.fetches == 1


def test_a_flood_of_random_kids_is_bounded_by_the_rate_limit(idp, attacker_key):
    for step in range(100):
        idp.clock.advance(1)
        refused(attacker_key.sign(claims(), headers={"kid": f"random-{step}"}), idp.source, TokenFailure.UNKNOWN_KID)
    assert idp.fetches == 1 + 100 // int(jwks.JWKS_MIN_REFETCH_INTERVAL)


def test_a_rotated_in_key_is_found_by_the_unknown_kid_refetch(idp, rsa_key, new_key):
    verify(rsa_key.sign(claims()), idp.source)
    idp.publish(rsa_key, new_key)
    idp.clock.advance(jwks.JWKS_MIN_REFETCH_INTERVAL)
    assert verify(new_key.sign(claims()), idp.source)["sub"]
    assert idp.fetches == 2


def test_stale_keys_serve_while_the_jwks_server_is_down_then_fail_closed(idp, rsa_key):
    token = rsa_key.sign(claims())
    verify(token, idp.source)
    idp.server.stop()
    idp.clock.advance(jwks.JWKS_CACHE_TTL + 1)
    assert verify(token, idp.source)  # stale, within the window
    idp.clock.advance(jwks.JWKS_MAX_STALE - 2)
    assert verify(token, idp.source)
    idp.clock.advance(1)
    refused(token, idp.source, TokenFailure.JWKS_UNAVAILABLE)


def test_failing_fetches_are_rate_limited_too(idp, rsa_key):
    token = rsa_key.sign(claims())
    verify(token, idp.source)
    idp.server.respond("/jwks", status=500, body=b"oops")
    idp.clock.advance(jwks.JWKS_CACHE_TTL)
    for _ in range(10):
        assert verify(token, idp.source)
    assert idp.fetches == 2
    idp.clock.advance(jwks.JWKS_MIN_REFETCH_INTERVAL)
    assert verify(token, idp.source)
    assert idp.fetches == 3


def test_the_cache_recovers_when_the_server_comes_back(idp, rsa_key, new_key):
    verify(rsa_key.sign(claims()), idp.source)
    idp.server.respond("/jwks", status=503, body=b"")
    idp.clock.advance(jwks.JWKS_CACHE_TTL)
    verify(rsa_key.sign(claims()), idp.source)
    idp.publish(new_key)
    idp.clock.advance(jwks.JWKS_MIN_REFETCH_INTERVAL)
    assert verify(new_key.sign(claims()), idp.source)
    refused(rsa_key.sign(claims()), idp.source, TokenFailure.UNKNOWN_KID)  # the old key was withdrawn


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"keys": []}'),
        (200, b"<html>garbage</html>"),
        (200, b'{"keys": "nope"}'),
        (200, b"[]"),
        (200, b'{"keys": []}'),
        (302, b""),
    ],
)
def test_an_unusable_jwks_answer_fails_closed(idp, rsa_key, status, body):
    idp.server.respond("/jwks", status=status, body=body, headers={"Location": "http://127.0.0.1:1/"})
    token = rsa_key.sign(claims())
    refused(token, idp.source, TokenFailure.JWKS_UNAVAILABLE)
    refused(token, idp.source, TokenFailure.JWKS_UNAVAILABLE)
    assert idp.fetches == 1


def test_an_oversized_jwks_fails_closed(idp, rsa_key):
    idp.server.respond("/jwks", body=b'{"keys": [' + b" " * (jwks.MAX_JWKS_BYTES + 1) + b"]}")
    refused(rsa_key.sign(claims()), idp.source, TokenFailure.JWKS_UNAVAILABLE)


def test_the_jwks_fetch_goes_through_the_ssrf_guard(idp, rsa_key, settings):
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    refused(rsa_key.sign(claims()), idp.source, TokenFailure.JWKS_UNAVAILABLE)
    assert idp.fetches == 0


def test_unusable_entries_are_skipped(idp, rsa_key, ec_key):
    weak = josepy.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=1024)).public_key()  # noqa: S505
    extra = [
        {**rsa_key.public_jwk, "kid": "enc", "use": "enc"},
        {**rsa_key.public_jwk, "kid": "wrap-only", "key_ops": ["wrapKey"]},
        {**rsa_key.public_jwk, "kid": "for-hmac", "alg": "HS256"},
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "kid": "bad-curve", "crv": "P-192", "x": "AA", "y": "AA"},
        {**weak.to_json(), "kid": "weak"},
        {**rsa_key.public_jwk, "kid": 12},
        "not an object",
        None,
    ]
    idp.publish(rsa_key, ec_key, extra=extra)
    assert idp.source.key_for(rsa_key.kid) is not None
    assert idp.source.key_for(ec_key.kid) is not None
    for kid in ("enc", "wrap-only", "for-hmac", "sym", "ed", "broken", "bad-curve", "weak"):
        assert idp.source.key_for(kid) is None, kid


def test_private_key_material_in_a_jwks_is_never_trusted(rsa_key):
    private_jwk = josepy.JWK.load(rsa_key.private_pem).to_json()
    keys = parse_jwks({"keys": [{**private_jwk, "kid": "leaked"}, {**rsa_key.public_jwk, "kid": "ok"}]})
    assert set(keys) == {"ok"}


def test_the_first_of_duplicate_kids_wins(rsa_key, attacker_key):
    keys = parse_jwks({"keys": [rsa_key.public_jwk, {**attacker_key.public_jwk, "kid": rsa_key.kid}]})
    assert keys[rsa_key.kid].thumbprint() == josepy.JWK.from_json(rsa_key.public_jwk).thumbprint()


def test_a_huge_jwks_is_truncated(rsa_key):
    document = {"keys": [{**rsa_key.public_jwk, "kid": f"k{index}"} for index in range(jwks.MAX_JWKS_KEYS + 50)]}
    assert len(parse_jwks(document)) == jwks.MAX_JWKS_KEYS


def test_concurrent_lookups_on_a_cold_cache_share_one_fetch(idp, rsa_key):
    token = rsa_key.sign(claims())
    start = threading.Barrier(8)
    results: list[object] = []

    def worker():
        start.wait()
        try:
            results.append(verify(token, idp.source)["sub"])
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["alice@example.com"] * 8
    assert idp.fetches == 1


def test_shared_sources_are_one_per_url(idp):
    url = idp.server.url("/jwks")
    assert jwks_key_source(url) is jwks_key_source(url)
    assert jwks_key_source(url) is not jwks_key_source(url + "?v=2")
    assert isinstance(jwks_key_source(url), JwksKeySource)


def test_the_shared_registry_is_bounded(monkeypatch):
    monkeypatch.setattr(jwks, "MAX_SHARED_SOURCES", 3)
    first = jwks_key_source("https://a.example.com/jwks")
    for name in ("b", "c", "d"):
        jwks_key_source(f"https://{name}.example.com/jwks")
    assert jwks_key_source("https://a.example.com/jwks") is not first
