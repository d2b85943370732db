"""Finding 7: a refused token that points at one org is audited on that org's chain, not the platform's."""

import base64
import json

import josepy
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.models import IssuedCredential
from keyward.crypto.signing import load_es256_key, sign_compact
from keyward.idp.dev import ensure_dev_idp
from tests.broker.conftest import last_audit

pytestmark = pytest.mark.django_db


def _segment(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def forged_like(world, claims_update: dict | None = None) -> str:
    """A token naming the org's dev IdP (iss, aud, kid) but signed with an attacker's key."""
    genuine = world.user_token()
    header, claims = _segment(genuine, 0), _segment(genuine, 1)
    claims.update(claims_update or {})
    attacker_key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    return sign_compact(claims, key=attacker_key, kid=header["kid"], typ="application/JWT")


def assert_refused_on_the_orgs_chain(response, world, reason: str) -> None:
    assert (response.status_code, response.json()["error"]) == (401, "invalid_user_token")
    assert not IssuedCredential.objects.exists()
    event = last_audit()
    assert (event.event_type, event.outcome, event.reason_code) == ("credential.denied", "denied", "invalid_user_token")
    assert event.org == world.org
    assert event.detail["verification"] == reason


def test_a_forged_signature_on_the_orgs_issuer_is_audited_in_that_org(world):
    response = world.ask(token=forged_like(world))
    assert_refused_on_the_orgs_chain(response, world, "bad_signature")


def test_an_expired_token_of_the_org_is_audited_in_that_org(world):
    connector = ensure_dev_idp(world.org)
    assert connector.org == world.org
    genuine = world.user_token()
    header, claims = _segment(genuine, 0), _segment(genuine, 1)
    claims.update(exp=claims["iat"] - 3600, nbf=claims["iat"] - 7200, iat=claims["iat"] - 7200)
    token = sign_compact(
        claims, key=load_es256_key(connector.dev_key.unseal_secret()), kid=header["kid"], typ="application/JWT"
    )
    assert_refused_on_the_orgs_chain(world.ask(token=token), world, "expired")


def test_a_token_naming_no_org_stays_on_the_platform_chain(world):
    response = world.ask(token=forged_like(world, {"iss": "https://nobody.example"}))
    assert response.status_code == 401
    event = last_audit()
    assert (event.reason_code, event.org) == ("invalid_user_token", None)
