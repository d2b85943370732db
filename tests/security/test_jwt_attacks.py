"""JWT attacks on every place keyward verifies a token, end to end through the HTTP API.

Places (tests/security/targets.py): the end user's token (the dev IdP's ES256 and a real RS256 IdP
whose JWKS keyward fetches), the delegation token, the agent's attestation assertion, and
introspection. Each forged token must be refused the documented way, issue nothing, leave its audit
row on the right chain, and make keyward fetch nothing from where the token's header points.
"""

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.db import connection

from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent
from keyward.jose.keys import MAX_KID_LENGTH
from keyward.jose.verify import DEFAULT_LEEWAY
from tests.broker.conftest import allow, make_agent, make_provider
from tests.factories import make_org
from tests.jose.tokens import SigningKey, b64
from tests.local_http import LocalServer
from tests.security import forge
from tests.security.expect import Baseline, refused
from tests.security.targets import (
    Target,
    attestation_target,
    delegation_target,
    introspection_target,
    oidc_user_token_target,
    user_token_target,
)

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = connection.vendor == "postgresql"  # SQLite stores a NUL that PostgreSQL refuses

TARGETS = ("user-token-dev-idp", "user-token-oidc", "delegation-token", "attestation-assertion", "introspection")
MARGIN = 15  # seconds on either side of the verifier's leeway


@pytest.fixture(scope="module")
def victim_rsa() -> rsa.RSAPrivateKey:
    """The RS256 key of the IdP and of the CI issuer the targets trust."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def attacker_keys() -> dict[str, SigningKey]:
    return {
        "RS256": SigningKey("attacker-rsa", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ES256": SigningKey("attacker-ec", "ES256", ec.generate_private_key(ec.SECP256R1())),
    }


@dataclass
class Attacker:
    """The attacker's own keys, and a server of theirs that records whether keyward ever calls it."""

    keys: dict[str, SigningKey]
    server: LocalServer

    def key_for(self, target: Target) -> SigningKey:
        """A key of the target's algorithm, so a refusal cannot come from the algorithm allow-list alone."""
        return self.keys[target.key.alg]

    def publish_under(self, kid: str) -> None:
        """The attacker's JWKS and certificate, naming their keys with the victim's kid."""
        self.server.respond("/jwks", json_body={"keys": [{**key.public_jwk, "kid": kid} for key in self.keys.values()]})
        pem = b"".join(forge.self_signed_certificate(key, serialization.Encoding.PEM) for key in self.keys.values())
        self.server.respond("/x5u", body=pem, headers={"Content-Type": "application/pem-certificate-chain"})


@pytest.fixture
def attacker(local_server, attacker_keys) -> Attacker:
    return Attacker(attacker_keys, local_server())


@pytest.fixture(params=TARGETS)
def target(request, world, local_server, loopback_only, victim_rsa) -> Target:
    name = request.param
    if name == "user-token-dev-idp":
        return user_token_target(world)
    if name == "user-token-oidc":
        return oidc_user_token_target(world, local_server(), victim_rsa)
    if name == "delegation-token":
        return delegation_target(world)
    if name == "attestation-assertion":
        return attestation_target(world, local_server(), victim_rsa)
    return introspection_target(world)


def _kid(target: Target, kid) -> str:
    return forge.resign(target.legit, target.key, header={"kid": kid})


def _signed_by_attacker(target: Target, attacker: Attacker, **header) -> str:
    key = attacker.key_for(target)
    attacker.publish_under(target.key.kid)
    return forge.resign(target.legit, key, header={"alg": key.alg, **header})


def _x5c(target: Target, attacker: Attacker) -> str:
    key = attacker.key_for(target)
    chain = [base64.b64encode(forge.self_signed_certificate(key)).decode()]
    return _signed_by_attacker(target, attacker, kid=target.key.kid, x5c=chain)


def _without_kid_alg_none(target: Target) -> str:
    header, claims, _ = forge.split(target.legit)
    header = {name: value for name, value in header.items() if name != "kid"}
    return f"{b64({**header, 'alg': 'none'})}.{b64(claims)}."


ATTACKS = {
    "alg-none": lambda t, a: forge.unsigned(t.legit, "none"),
    "alg-None-keeping-the-signature": lambda t, a: forge.unsigned(t.legit, "None", forge.split(t.legit)[2]),
    "alg-NONE-with-a-dummy-signature": lambda t, a: forge.unsigned(t.legit, "NONE", "AAAA"),
    "alg-none-without-kid": lambda t, a: _without_kid_alg_none(t),
    "hs256-keyed-with-the-public-key-pem": lambda t, a: forge.hmac_signed(
        t.legit, forge.public_key_encodings(t.public_key, t.key.kid)["pem"]
    ),
    "hs256-keyed-with-the-public-key-der": lambda t, a: forge.hmac_signed(
        t.legit, forge.public_key_encodings(t.public_key, t.key.kid)["der"]
    ),
    "hs256-keyed-with-the-public-jwk": lambda t, a: forge.hmac_signed(
        t.legit, forge.public_key_encodings(t.public_key, t.key.kid)["jwk"]
    ),
    "hs256-keyed-with-the-raw-public-key": lambda t, a: forge.hmac_signed(
        t.legit, forge.public_key_encodings(t.public_key, t.key.kid)["raw"]
    ),
    "hs512-keyed-with-the-public-key-pem": lambda t, a: forge.hmac_signed(
        t.legit, forge.public_key_encodings(t.public_key, t.key.kid)["pem"], "HS512"
    ),
    "kid-path-traversal": lambda t, a: _kid(t, "../../../../../../../dev/null"),
    "kid-sql-injection": lambda t, a: _kid(t, "' OR '1'='1' --"),
    "kid-sql-union": lambda t, a: _kid(t, f"{t.key.kid}' UNION SELECT public_jwk FROM crypto_signingkey --"),  # noqa: S608
    "kid-one-past-the-limit": lambda t, a: _kid(t, "k" * (MAX_KID_LENGTH + 1)),
    "kid-absurd-length": lambda t, a: _kid(t, "k" * 8000),
    "kid-with-nul": lambda t, a: _kid(t, t.key.kid + "\x00"),
    "kid-not-a-string": lambda t, a: _kid(t, {"$ne": ""}),
    "jku-to-the-attackers-jwks": lambda t, a: _signed_by_attacker(t, a, kid=t.key.kid, jku=a.server.url("/jwks")),
    "x5u-to-the-attackers-certificate": lambda t, a: _signed_by_attacker(t, a, kid=t.key.kid, x5u=a.server.url("/x5u")),
    "jwk-embedded-under-the-victims-kid": lambda t, a: _signed_by_attacker(
        t, a, kid=t.key.kid, jwk=a.key_for(t).public_jwk
    ),
    "jwk-embedded-without-kid": lambda t, a: _signed_by_attacker(t, a, kid=None, jwk=a.key_for(t).public_jwk),
    "x5c-with-the-attackers-certificate": _x5c,
    "signed-by-another-key-under-the-victims-kid": lambda t, a: _signed_by_attacker(t, a, kid=t.key.kid),
    "claims-altered-after-signing": lambda t, a: forge.tampered(t.legit, sub="mallory@example.com", exp=2**40),
    "crit-header": lambda t, a: forge.resign(t.legit, t.key, header={"crit": ["exp"]}),
}


def test_the_untouched_token_is_accepted(target):
    """The control: each refusal below is the attack's doing, not the target's set-up."""
    assert target.accepted(target.present(target.legit))


def test_forged_tokens_are_refused_issue_nothing_and_fetch_nothing(target, attacker, connection_attempts, subtests):
    for attack, build in ATTACKS.items():
        with subtests.test(attack=attack):
            forged = build(target, attacker)
            before = Baseline.take()

            response = target.present(forged)

            target.assert_refused(response, before)
            assert attacker.server.count() == 0, "keyward fetched what the token's header pointed at"
            assert all(port != attacker.server.port for _address, port in connection_attempts)
            if target.jwks_server is not None:
                # An unknown kid may cause one refetch per interval, never one per forged token.
                assert target.jwks_server.count("/jwks") <= 1


def _times(now: int, *, exp: int, nbf: int | None = None, iat: int | None = None) -> dict:
    """The time claims to sign: iat ten minutes ago unless given, and no nbf unless given."""
    return {"exp": exp, "nbf": nbf, "iat": now - 600 if iat is None else iat}


TIMES_REFUSED = {
    "expired-beyond-leeway": lambda now: _times(now, exp=now - DEFAULT_LEEWAY - MARGIN),
    "not-yet-valid-beyond-leeway": lambda now: _times(now, exp=now + 600, nbf=now + DEFAULT_LEEWAY + MARGIN, iat=now),
    "issued-in-the-future-beyond-leeway": lambda now: _times(now, exp=now + 600, iat=now + DEFAULT_LEEWAY + MARGIN),
}
TIMES_ACCEPTED = {
    "expired-within-leeway": lambda now: _times(now, exp=now - DEFAULT_LEEWAY + MARGIN),
    "not-yet-valid-within-leeway": lambda now: _times(now, exp=now + 600, nbf=now + DEFAULT_LEEWAY - MARGIN, iat=now),
    "issued-in-the-future-within-leeway": lambda now: _times(now, exp=now + 600, iat=now + DEFAULT_LEEWAY - MARGIN),
}
WRONG_ISSUER_OR_AUDIENCE = {
    "another-issuer": {"iss": "https://evil.example.com"},
    "no-issuer": {"iss": None},
    "another-audience": {"aud": "someone-else"},
    "another-audience-in-a-list": {"aud": ["someone-else"]},
}


def test_time_claims_beyond_the_leeway_are_refused_and_within_it_accepted(target, subtests):
    for case, times in TIMES_REFUSED.items():
        with subtests.test(case=case):
            token = forge.resign(target.legit, target.key, claims=times(int(time.time())))
            before = Baseline.take()
            target.assert_refused(target.present(token), before)
    for case, times in TIMES_ACCEPTED.items():
        if target.name == "introspection" and case == "expired-within-leeway":
            continue  # see test_introspection_calls_a_credential_inactive_once_it_expired
        with subtests.test(case=case):
            token = forge.resign(target.legit, target.key, claims=times(int(time.time())))
            assert target.accepted(target.present(token))


def test_a_token_for_another_issuer_or_audience_is_refused(target, subtests):
    for case, claims in WRONG_ISSUER_OR_AUDIENCE.items():
        if target.name == "introspection" and "aud" in claims:
            continue  # introspection answers for any audience keyward signed for; the resource server checks aud
        with subtests.test(case=case):
            token = forge.resign(target.legit, target.key, claims=claims)
            before = Baseline.take()
            target.assert_refused(target.present(token), before)


def test_introspection_calls_a_credential_inactive_once_it_expired(world):
    target = introspection_target(world)
    expired_at = int(time.time()) - 10
    IssuedCredential.objects.filter(jti=forge.split(target.legit)[1]["jti"]).update(
        expires_at=datetime.fromtimestamp(expired_at, UTC)
    )
    token = forge.resign(target.legit, target.key, claims={"exp": expired_at})

    assert target.present(token).json() == {"active": False}


def test_a_token_from_another_orgs_idp_cannot_reach_this_orgs_agent(world):
    """The token's issuer picks the org; this org's agent name means nothing in the other org."""
    other = make_org("Globex")
    this_chain_before = AuditEvent.objects.filter(org=world.org).count()
    before = Baseline.take()

    response = world.ask(token=world.user_token(org=other))

    row = refused(response, 404, "unknown_agent", before=before, chain=other)
    assert row.agent == world.agent.name
    assert AuditEvent.objects.filter(org=world.org).count() == this_chain_before


def test_a_token_from_another_orgs_idp_gets_that_orgs_agent_never_this_one(world):
    other = make_org("Globex")
    make_agent(other, world.agent.name)
    make_provider(other)
    allow(other, provider="stripe")
    this_chain_before = AuditEvent.objects.filter(org=world.org).count()

    response = world.ask(token=world.user_token(org=other))

    assert response.status_code == 200, response.content
    record = IssuedCredential.objects.get(jti=response.json()["credential_id"])
    assert (record.org, record.agent.org) == (other, other)
    assert forge.split(response.json()["credential"])[1]["org"] == other.slug
    assert AuditEvent.objects.filter(org=world.org).count() == this_chain_before


@pytest.mark.parametrize("target", ["user-token-dev-idp", "user-token-oidc"], indirect=True)
@pytest.mark.parametrize("claims", [{"iss": "https://idp.example.com\x00"}, {"aud": "keyward\x00"}, {"aud": ["\x00"]}])
def test_an_unsigned_token_with_a_nul_in_its_issuer_or_audience_is_a_401(target, claims):
    header, payload, _ = forge.split(target.legit)
    unsigned = f"{b64({**header, 'alg': 'none'})}.{b64({**payload, **claims})}.AAAA"
    before = Baseline.take()
    target.assert_refused(target.present(unsigned), before)


@pytest.mark.parametrize("target", ["user-token-dev-idp", "user-token-oidc"], indirect=True)
def test_a_signed_user_token_with_a_nul_in_its_subject_is_a_401(target):
    token = forge.resign(target.legit, target.key, claims={"sub": "alice\x00@example.com"})
    before = Baseline.take()
    target.assert_refused(target.present(token), before)


@pytest.mark.parametrize("target", ["user-token-dev-idp", "user-token-oidc"], indirect=True)
def test_a_signed_user_token_with_a_nul_in_its_email_never_stores_it(target):
    token = forge.resign(target.legit, target.key, claims={"email": "alice\x00@example.com"})
    response = target.present(token)
    assert response.status_code in (200, 401), response.content[:300]
    stored = IssuedCredential.objects.values_list("end_user_email", flat=True)
    assert not any("\x00" in email for email in stored)
