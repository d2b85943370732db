"""`oauth2_token_exchange` (RFC 8693) against a token endpoint that verifies both tokens it is given."""

import pytest
from django.conf import settings

from broker import registry
from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent
from tests.broker.conftest import last_audit, make_agent
from tests.broker.minters.setups import ACCESS_TOKEN_TYPE, oauth2_token_exchange

pytestmark = pytest.mark.django_db


def ask_as_user(world, exchange, **kwargs):
    token = world.user_token()
    exchange.subject_tokens.append(token)
    return token, exchange.ask(world, token=token, **kwargs)


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_exchanges_the_users_token_with_the_agent_as_actor(world, stubs, auth_method):
    exchange = oauth2_token_exchange(
        world, stubs, auth_method=auth_method, audience="ledger", resource="https://ledger.acme.test/api"
    )
    user_token, response = ask_as_user(world, exchange, scope="invoices:read")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["credential"] == exchange.fake.issued[0]
    assert body["token_type"] == "Bearer"
    (form,) = exchange.fake.forms
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["subject_token"] == user_token
    assert form["requested_token_type"] == ACCESS_TOKEN_TYPE
    assert (form["scope"], form["audience"], form["resource"]) == (
        "invoices:read",
        "ledger",
        "https://ledger.acme.test/api",
    )
    (claims,) = exchange.actor_claims  # verified against keyward's JWKS by the fake
    assert claims["sub"] == "invoice-bot"
    assert claims["iss"] == settings.KEYWARD_ISSUER
    assert claims["aud"] == exchange.token_url
    assert claims["org"] == world.org.slug
    assert "scope" not in claims
    assert exchange.actor_headers[0]["typ"] == "kw-cred+jwt"


def test_the_actor_token_is_no_keyward_credential_or_delegation_token(world, stubs):
    exchange = oauth2_token_exchange(world, stubs)
    assert ask_as_user(world, exchange)[1].status_code == 200
    actor_token = exchange.fake.forms[0]["actor_token"]

    as_delegation = world.ask(token=None, delegation=actor_token)
    assert as_delegation.status_code == 401
    assert as_delegation.json()["error"] == "invalid_delegation"
    as_user = world.ask(token=actor_token)
    assert as_user.status_code == 401
    assert as_user.json()["error"] == "invalid_user_token"
    assert registry.introspect(world.org, actor_token) == {"active": False}
    assert actor_token not in str(list(AuditEvent.objects.values()))


def test_a_requested_token_type_other_than_an_access_token_is_passed_on(world, stubs):
    exchange = oauth2_token_exchange(world, stubs, requested_token_type="urn:ietf:params:oauth:token-type:jwt")
    exchange.fake.answer = lambda answer: {
        **answer,
        "token_type": "N_A",
        "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    response = ask_as_user(world, exchange)[1]
    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "N_A"
    record = IssuedCredential.objects.get()
    assert record.native["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"


def test_a_subject_token_the_provider_does_not_accept_is_a_502(world, stubs):
    exchange = oauth2_token_exchange(world, stubs)
    response = exchange.ask(world)  # a user token the fake was never told about
    assert response.status_code == 502
    detail = last_audit("credential.denied").detail
    assert (detail["upstream_status"], detail["upstream_error"]) == (400, "invalid_grant")


def test_a_delegated_request_has_no_user_token_and_is_refused_before_any_call(world, stubs):
    exchange = oauth2_token_exchange(world, stubs)
    make_agent(world.org, "sub-bot", grants=[{"provider": "downstream", "scopes": ["*"], "environments": ["prod"]}])
    root = ask_as_user(world, exchange)[1].json()
    calls = exchange.server.count()

    response = world.ask(
        {"provider": "downstream", "scope": "invoices:read", "ttl": "1m"},
        agent="sub-bot",
        token=None,
        delegation=root["delegation"]["token"],
    )
    assert response.status_code == 502
    assert "end user's own token" in response.json()["message"]
    assert last_audit("credential.denied").detail["upstream_error"] == "subject_token_unavailable"
    assert exchange.server.count() == calls
    assert IssuedCredential.objects.count() == 1
