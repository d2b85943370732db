"""`oauth2_client_credentials` against a real token endpoint on 127.0.0.1 that authenticates the client."""

from datetime import datetime, timedelta

import pytest

from broker.models import IssuedCredential
from keyward.providers import services
from tests.broker.conftest import last_audit
from tests.broker.minters.setups import CLIENT_ID, CLIENT_SECRET, oauth2_client_credentials

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_mints_an_access_token_with_the_configured_client_authentication(world, stubs, auth_method):
    oauth = oauth2_client_credentials(world, stubs, auth_method=auth_method, audience="https://billing.acme.test")
    response = oauth.ask(world, scope="invoices:read reports:read")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["credential"] == oauth.fake.issued[0]
    assert body["token_type"] == "Bearer"
    (form,) = oauth.fake.forms
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "invoices:read reports:read"
    assert form["audience"] == "https://billing.acme.test"
    if auth_method == "client_secret_post":
        assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    else:
        assert "client_secret" not in form
        assert oauth.server.seen[0].header("Authorization").startswith("Basic ")
    record = IssuedCredential.objects.get(jti=body["credential_id"])
    assert record.native == {"token_type": "Bearer", "scope": "invoices:read reports:read", "expires_in": 300}
    assert record.revocable_upstream is False


def test_the_wrong_client_authentication_method_is_refused_by_the_provider(world, stubs):
    """The fake insists on one method: a client that sent the other would not get a token."""
    oauth = oauth2_client_credentials(world, stubs, auth_method="client_secret_basic")
    oauth.fake.auth_method = "client_secret_post"
    response = oauth.ask(world)
    assert response.status_code == 502
    detail = last_audit("credential.denied").detail
    assert (detail["upstream_status"], detail["upstream_error"]) == (401, "invalid_client")


def test_a_rotated_client_secret_is_used_at_once(world, stubs):
    oauth = oauth2_client_credentials(world, stubs)
    oauth.fake.client_secret = "cs_rotated_" + "7" * 20
    assert oauth.ask(world).status_code == 502
    services.rotate_secret(oauth.provider, secret=oauth.fake.client_secret)
    assert oauth.ask(world).status_code == 200


def test_expiry_is_the_earlier_of_the_providers_and_keywards(world, stubs):
    oauth = oauth2_client_credentials(world, stubs)
    oauth.fake.expires_in = 60
    short = oauth.ask(world, ttl="10m").json()
    record = IssuedCredential.objects.get(jti=short["credential_id"])
    assert timedelta(seconds=60) <= record.expires_at - record.issued_at < timedelta(minutes=10)

    oauth.fake.expires_in = "86400"  # some servers send a string; the TTL asked for is shorter
    long = oauth.ask(world, ttl="5m").json()
    record = IssuedCredential.objects.get(jti=long["credential_id"])
    assert record.expires_at - record.issued_at == timedelta(minutes=5)
    assert datetime.fromisoformat(long["expires_at"]) == record.expires_at

    oauth.fake.expires_in = None  # optional in RFC 6749: keyward's own expiry stands
    oauth.fake.answer = lambda answer: {key: value for key, value in answer.items() if key != "expires_in"}
    none = oauth.ask(world, ttl="5m").json()
    record = IssuedCredential.objects.get(jti=none["credential_id"])
    assert record.expires_at - record.issued_at == timedelta(minutes=5)


def test_a_token_with_more_scope_than_asked_is_not_handed_out(world, stubs):
    oauth = oauth2_client_credentials(world, stubs)
    oauth.fake.answer = lambda answer: {**answer, "scope": "invoices:read invoices:write"}
    response = oauth.ask(world, scope="invoices:read")
    assert response.status_code == 502
    assert last_audit("credential.denied").detail["upstream_error"] == "scope_exceeded"
    assert oauth.fake.issued[0] not in response.content.decode()
    assert not IssuedCredential.objects.exists()


@pytest.mark.parametrize("token_type", ["DPoP", "mac", 7])
def test_a_token_keyward_cannot_hand_out_is_refused(world, stubs, token_type):
    oauth = oauth2_client_credentials(world, stubs)
    oauth.fake.answer = lambda answer: {**answer, "token_type": token_type}
    assert oauth.ask(world).status_code == 502
    assert last_audit("credential.denied").detail["upstream_error"] == "unsupported_token_type"


@pytest.mark.parametrize("expires_in", [0, -5, "soon", 1.5, True, 10**12])
def test_a_malformed_expires_in_is_a_bad_response(world, stubs, expires_in):
    oauth = oauth2_client_credentials(world, stubs)
    oauth.fake.expires_in = expires_in
    assert oauth.ask(world).status_code == 502
    assert last_audit("credential.denied").detail["upstream_error"] == "bad_response"
