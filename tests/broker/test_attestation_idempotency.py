"""Agent attestation (X-Keyward-Agent-Assertion) and Idempotency-Key replays."""

import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connections

from broker.models import IdempotencyRecord, IssuedCredential
from tests import local_http
from tests.broker.conftest import last_audit

pytestmark = pytest.mark.django_db

local_server = local_http.local_server
loopback_only = local_http.loopback_only
ATTESTATION_ISSUER = "https://token.actions.example.com"


@pytest.fixture(scope="module")
def attestation_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def attested(world, local_server, loopback_only, attestation_key):
    """invoice-bot must prove it runs in acme/billing's main-branch workflow."""
    server = local_server()
    public = jwt.algorithms.RSAAlgorithm.to_jwk(attestation_key.public_key(), as_dict=True)
    server.respond("/jwks", json_body={"keys": [{**public, "kid": "ci-1", "use": "sig", "alg": "RS256"}]})
    agent = world.agent
    agent.attestation_required = True
    agent.attestation_issuer = ATTESTATION_ISSUER
    agent.attestation_jwks_uri = server.url("/jwks")
    agent.attestation_audience = "keyward"
    agent.attestation_algorithms = ["RS256"]
    agent.attestation_subject_pattern = "repo:acme/billing:ref:refs/heads/*"
    agent.attestation_required_claims = {"repository_owner": "acme"}
    agent.save()
    return world


def assertion(key, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": ATTESTATION_ISSUER,
        "aud": "keyward",
        "sub": "repo:acme/billing:ref:refs/heads/main",
        "repository_owner": "acme",
        "iat": now,
        "exp": now + 300,
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "ci-1"})


def test_a_valid_assertion_passes(attested, attestation_key):
    response = attested.ask(assertion=assertion(attestation_key))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sub": "repo:evil/billing:ref:refs/heads/main"}, "subject"),
        ({"repository_owner": "evil"}, "claim:repository_owner"),
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"iss": "https://evil.example"}, "wrong_issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
    ],
)
def test_a_bad_assertion_is_403(attested, attestation_key, overrides, reason):
    response = attested.ask(assertion=assertion(attestation_key, **overrides))
    assert response.status_code == 403
    assert response.json()["error"] == "agent_attestation_required"
    event = last_audit()
    assert (event.reason_code, event.detail["attestation"]) == ("agent_attestation_required", reason)
    assert not IssuedCredential.objects.exists()


def test_a_missing_assertion_is_403(attested):
    response = attested.ask()
    assert response.json()["error"] == "agent_attestation_required"
    assert last_audit().detail["attestation"] == "missing"


def test_an_assertion_signed_by_another_key_is_403(attested):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert attested.ask(assertion=assertion(other)).json()["error"] == "agent_attestation_required"


def test_an_idempotent_retry_returns_the_same_credential(world):
    token = world.user_token()
    first = world.ask(token=token, idempotency_key="order-42")
    second = world.ask(token=world.user_token(), idempotency_key="order-42")

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert IssuedCredential.objects.count() == 1
    replay = last_audit()
    assert replay.detail.get("replay") is True
    assert replay.credential_jti == first.json()["credential_id"]
    stored = IdempotencyRecord.objects.get()
    assert first.json()["credential"].encode() not in bytes(stored.ciphertext)


def test_the_same_key_for_a_different_request_is_409(world):
    world.ask(idempotency_key="order-42")
    response = world.ask({"provider": "stripe", "scope": "refunds:read"}, idempotency_key="order-42")
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"
    assert IssuedCredential.objects.count() == 1


def test_another_end_user_with_the_same_key_does_not_get_the_credential(world):
    first = world.ask(idempotency_key="k1")
    other_user = world.ask(token=world.user_token(sub="mallory@example.com"), idempotency_key="k1")
    assert other_user.status_code == 409
    assert first.json()["credential"] not in other_user.content.decode()


def test_a_refused_request_releases_its_key(world):
    world.agent.status = "revoked"
    world.agent.save()
    assert world.ask(idempotency_key="k1").status_code == 403
    world.agent.status = "active"
    world.agent.save()
    assert world.ask(idempotency_key="k1").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_issue_one_credential():
    from rest_framework.test import APIClient

    from tests.broker.conftest import World, allow, make_agent, make_provider
    from tests.factories import make_org

    org = make_org("Race")
    world = World(org=org, agent=make_agent(org), provider=make_provider(org), client=APIClient())
    allow(org, provider="stripe")
    token = world.user_token()
    world.ask(token=token)  # warm caches so the threads race on the key, not on first-key creation
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    bodies: list[dict] = []

    def retry() -> None:
        try:
            barrier.wait(timeout=10)
            response = World(org=org, agent=world.agent, provider=world.provider, client=APIClient()).ask(
                token=token, idempotency_key="same"
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                bodies.append(response.json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert set(statuses) <= {200, 409}
    assert IssuedCredential.objects.filter(org=org).count() == 2  # the warm-up and exactly one keyed issue
    assert len({body["credential_id"] for body in bodies}) == 1
