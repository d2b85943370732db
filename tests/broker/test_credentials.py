"""POST /v1/credentials: every row of DESIGN.md §4's outcome table, each with its audit row."""

import time
from datetime import timedelta
from unittest import mock

import jwt
import pytest
from django.utils import timezone

from broker.models import IssuedCredential
from keyward.audit.models import AuditEvent
from keyward.audit.writer import AuditUnavailable
from keyward.crypto.signing import sign_token
from keyward.jose.types import TokenType
from keyward.policies.models import Effect, Policy
from tests.broker.conftest import allow, last_audit, make_agent, make_provider, make_static_provider
from tests.factories import make_org

pytestmark = pytest.mark.django_db


def verify_with_jwks(client, token: str, audience: str = "stripe") -> dict:
    """What a resource server does: PyJWT and nothing but the published JWKS."""
    jwks = client.get("/v1/jwks").json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key=key, algorithms=["ES256"], audience=audience, issuer="http://localhost:8000")


def assert_refused(response, status: int, code: str, *, records: int = 0) -> AuditEvent:
    """The refusal's status, error body and audit row; `records` issued credentials exist (from setup)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == code
    # A body that fails validation names its fields, as every 400 invalid_request does.
    assert set(body) - {"fields"} == {"error", "message", "request_id"}
    assert "fields" not in body or status == 400
    event = last_audit()
    assert event.event_type == "credential.denied"
    assert event.outcome == "denied"
    assert event.reason_code == code
    assert event.request_id == body["request_id"]
    assert IssuedCredential.objects.count() == records
    return event


def test_issued_credential_shape_claims_record_and_audit(world):
    response = world.ask({"provider": "stripe", "scope": "charges:read", "ttl": "5m"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"credential", "token_type", "provider", "scope", "expires_at", "delegation", "credential_id"}
    assert body["token_type"] == "Bearer"
    assert (body["provider"], body["scope"]) == ("stripe", "charges:read")
    assert response["Cache-Control"] == "no-store"

    claims = verify_with_jwks(world.client, body["credential"])
    assert claims["sub"] == "alice@example.com"
    assert claims["org"] == world.org.slug
    assert (claims["scope"], claims["env"]) == ("charges:read", "prod")
    assert claims["jti"] == body["credential_id"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] == claims["iat"]
    assert claims["act"] == {"sub": "invoice-bot"}
    assert jwt.get_unverified_header(body["credential"])["typ"] == "kw-cred+jwt"

    record = IssuedCredential.objects.get()
    assert record.jti == body["credential_id"]
    assert (record.end_user, record.scope, record.environment, record.depth) == (
        "alice@example.com",
        "charges:read",
        "prod",
        1,
    )
    assert body["delegation"]["depth"] == 1
    assert body["delegation"]["chain"] == ["invoice-bot"]

    event = last_audit()
    assert (event.event_type, event.outcome, event.reason_code) == ("credential.issued", "success", "")
    assert (event.agent, event.end_user, event.provider, event.scope) == (
        "invoice-bot",
        "alice@example.com",
        "stripe",
        "charges:read",
    )
    assert event.credential_jti == record.jti
    assert event.delegation_chain == ["invoice-bot"]
    assert event.org == world.org
    assert body["credential"] not in str(AuditEvent.objects.values())


def test_the_credential_is_not_a_delegation_token_or_a_user_token(world):
    body = world.ask().json()
    as_delegation = world.ask(token=None, delegation=body["credential"])
    assert_refused(as_delegation, 401, "invalid_delegation", records=1)
    as_user_token = world.ask(token=body["credential"])
    assert_refused(as_user_token, 401, "invalid_user_token", records=1)
    delegation_as_user = world.ask(token=body["delegation"]["token"])
    assert delegation_as_user.status_code == 401


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{not json", {}),
        (b"[]", {}),
        ({"scope": "charges:read"}, {}),
        ({"provider": "stripe"}, {}),
        ({"provider": "stripe", "scope": "charges:read", "ttl": "forever"}, {}),
        ({"provider": "stripe", "scope": "charges:read", "ttl": "0s"}, {}),
        ({"provider": "stripe", "scope": "charges:read", "ttl": -5}, {}),
        ({"provider": "stripe", "scope": "charges:read", "ttl": True}, {}),
        ({"provider": "stripe", "scope": "bad scope;drop"}, {}),
        ({"provider": "Stripe!", "scope": "charges:read"}, {}),
        ({"provider": "stripe", "scope": ""}, {}),
        ({"provider": "stripe", "scope": 42}, {}),
        (None, {"agent": None}),
        (None, {"agent": "Not An Agent"}),
        (None, {"environment": "PROD!"}),
        (None, {"idempotency_key": "x" * 300}),
        (b"x" * 20000, {}),
    ],
)
def test_bad_requests_are_400_invalid_request(world, body, headers):
    response = world.ask(body, **headers)
    event = assert_refused(response, 400, "invalid_request")
    assert event.org is None


# What the OpenAPI schema says the body and headers are is what the broker takes (schemathesis checks it
# live; these pin the cases where the parser used to be looser than any schema could say).
@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"provider": "stripe", "scope": "charges:read", "scopes": "x"}, {}, "scopes"),
        ({"provider": "stripe", "scope": "charges:read", "ttl": "05m"}, {}, "ttl"),
        ({"provider": "stripe", "scope": "charges:read", "ttl": " 5m"}, {}, "ttl"),
        ({"provider": "stripe", "scope": "charges:read", "ttl": 300.5}, {}, "ttl"),
        ({"provider": "stripe", "scope": "charges:read", "ttl": 10**9}, {}, "ttl"),
        ({"provider": "stripe", "scope": "charges:read\tcharges:write"}, {}, "scope"),
        ({"provider": "stripe", "scope": " ".join(["charges:read"] * 21)}, {}, "scope"),
        ({"provider": 5, "scope": "charges:read"}, {}, "provider"),
        ({"provider": "stripe\n", "scope": "charges:read"}, {}, "provider"),
        (None, {"environment": ""}, None),
        (None, {"assertion": "   "}, None),
    ],
)
def test_what_the_schema_refuses_the_broker_refuses(world, body, headers, field):
    response = world.ask(body, **headers)
    assert_refused(response, 400, "invalid_request")
    if field is not None:
        assert field in response.json()["fields"]


def grant_every_charge(world) -> None:
    world.agent.grants = [{"provider": "stripe", "scopes": ["charges:*"], "environments": ["*"]}]
    world.agent.save()
    world.provider.scopes = ["charges:*"]
    world.provider.save()


@pytest.mark.postgres
def test_a_long_scope_list_is_a_400_not_a_database_error(world):
    """A request's scopes are stored joined (the record's and audit row's `scope`: 1000 characters);
    six long ones passed the parser and failed the record's insert on PostgreSQL."""
    grant_every_charge(world)
    scopes = " ".join(f"charges:{n}" + "x" * 190 for n in range(6))
    response = world.ask({"provider": "stripe", "scope": scopes})
    assert_refused(response, 400, "invalid_request")
    assert "scope" in response.json()["fields"]


def test_a_scope_may_be_long_as_long_as_the_list_fits(world):
    """The schema can bound the list but not each scope in it, so neither does the broker."""
    grant_every_charge(world)
    response = world.ask({"provider": "stripe", "scope": "charges:" + "x" * 300})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("ttl", [300, "300", "90s", "5m", "1h", None])
@pytest.mark.parametrize("scope", ["charges:read", "  charges:read  ", "charges:read charges:read"])
def test_what_the_schema_allows_the_broker_takes(world, ttl, scope):
    response = world.ask({"provider": "stripe", "scope": scope, "ttl": ttl})
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "charges:read"


def test_user_token_and_delegation_together_is_400(world):
    token = world.ask().json()["delegation"]["token"]
    IssuedCredential.objects.all().delete()
    assert_refused(world.ask(delegation=token), 400, "invalid_request")


@pytest.mark.parametrize(
    "token",
    [None, "garbage", "a.b.c", "x" * 20000],
)
def test_missing_or_garbage_user_token_is_401(world, token):
    response = world.ask(token=token)
    assert_refused(response, 401, "invalid_user_token")


def test_expired_user_token_is_401(world):
    token = world.user_token(ttl=1)
    with mock.patch("keyward.jose.verify.time.time", return_value=time.time() + 120):
        response = world.ask(token=token)
    assert_refused(response, 401, "invalid_user_token")


def test_a_token_from_an_unknown_issuer_is_401(world):
    forged = jwt.encode(
        {"iss": "https://evil.example", "aud": "keyward", "sub": "x", "exp": time.time() + 60}, "k" * 32
    )
    assert_refused(world.ask(token=forged), 401, "invalid_user_token")


def test_basic_auth_instead_of_bearer_is_401(world):
    response = world.ask(token=None, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert_refused(response, 401, "invalid_user_token")


def test_unknown_agent_is_404(world):
    event = assert_refused(world.ask(agent="ghost-bot"), 404, "unknown_agent")
    assert event.org == world.org
    assert event.end_user == "alice@example.com"


def test_an_agent_of_another_org_is_unknown_agent(world):
    other = make_org("Other")
    make_agent(other, "other-bot")
    assert_refused(world.ask(agent="other-bot"), 404, "unknown_agent")


def test_a_user_of_another_org_cannot_use_this_orgs_agent(world):
    other = make_org("Other")
    make_provider(other)
    allow(other, provider="stripe")
    response = world.ask(token=world.user_token(org=other))
    event = assert_refused(response, 404, "unknown_agent")
    assert event.org == other


def test_unknown_provider_is_404(world):
    response = world.ask({"provider": "github", "scope": "repo:read"})
    assert_refused(response, 404, "unknown_provider")


def test_revoked_agent_is_403(world):
    world.agent.status = "revoked"
    world.agent.save()
    assert_refused(world.ask(), 403, "agent_revoked")


@pytest.mark.parametrize(
    ("scope", "environment"),
    [
        ("refunds:write", None),  # not in the provider's catalogue
        ("payouts:read", None),  # not in the catalogue either
        ("charges:read", "dev"),  # the grant does not list dev
    ],
)
def test_scope_outside_the_catalogue_or_grant_is_403(world, scope, environment):
    response = world.ask({"provider": "stripe", "scope": scope}, environment=environment)
    assert_refused(response, 403, "scope_not_allowed")


def test_scope_in_the_catalogue_but_not_granted_is_403(world):
    world.agent.grants = [{"provider": "stripe", "scopes": ["charges:read"], "environments": ["prod"]}]
    world.agent.save()
    assert_refused(world.ask({"provider": "stripe", "scope": "charges:write"}), 403, "scope_not_allowed")


def test_policy_deny_is_403_and_records_the_rule(world):
    rule = Policy.objects.create(
        org=world.org, agent="invoice-bot", provider="stripe", scope="charges:write", effect=Effect.DENY
    )
    event = assert_refused(world.ask({"provider": "stripe", "scope": "charges:write"}), 403, "policy_denied")
    assert event.detail["policy_id"] == rule.pk


def test_no_matching_policy_is_denied_by_default(world):
    Policy.objects.all().delete()
    event = assert_refused(world.ask(), 403, "policy_denied")
    assert event.detail["policy_id"] is None


def test_require_approval_answers_202_and_repeats_the_same_approval(world):
    Policy.objects.create(org=world.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    body = {"provider": "stripe", "scope": "charges:write"}

    first, second = world.ask(body), world.ask(body)

    assert first.status_code == 202
    assert first.json()["status"] == "pending_approval"
    assert first.json()["approval_id"] == second.json()["approval_id"]
    event = last_audit()
    assert (event.event_type, event.outcome) == ("credential.pending_approval", "pending")
    assert event.detail["approval_id"] == first.json()["approval_id"]
    assert not IssuedCredential.objects.exists()


def test_ttl_is_clamped_to_the_smallest_limit(world):
    world.agent.max_ttl_seconds = 600
    world.agent.save()
    world.provider.max_ttl_seconds = 120
    world.provider.save()

    body = world.ask({"provider": "stripe", "scope": "charges:read", "ttl": "1h"}).json()

    claims = jwt.decode(body["credential"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
    assert last_audit().detail["ttl_seconds"] == 120


@pytest.mark.parametrize(("ttl", "seconds"), [("90s", 90), ("5m", 300), (240, 240), ("200", 200)])
def test_ttl_formats(world, ttl, seconds):
    body = world.ask({"provider": "stripe", "scope": "charges:read", "ttl": ttl}).json()
    claims = jwt.decode(body["credential"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == seconds


def test_org_max_ttl_clamps(world):
    world.org.max_ttl_seconds = 60
    world.org.save()
    body = world.ask({"provider": "stripe", "scope": "charges:read", "ttl": "1h"}).json()
    claims = jwt.decode(body["credential"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60


def test_multiple_scopes_and_environment(world):
    body = world.ask({"provider": "stripe", "scope": "charges:read refunds:read"}, environment="staging").json()
    claims = jwt.decode(body["credential"], options={"verify_signature": False})
    assert (claims["scope"], claims["env"]) == ("charges:read refunds:read", "staging")


def test_provider_audience_comes_from_config(world):
    world.provider.config = {"audience": "https://api.stripe.example"}
    world.provider.save()
    body = world.ask().json()
    assert verify_with_jwks(world.client, body["credential"], audience="https://api.stripe.example")


def test_audit_unavailable_means_no_credential_leaves(world):
    with mock.patch("broker.pipeline.record_event", side_effect=AuditUnavailable("down")):
        response = world.ask()
    assert response.status_code == 503
    assert response.json()["error"] == "audit_unavailable"
    assert "credential" not in response.json()
    assert not IssuedCredential.objects.exists()


def test_static_provider_hands_out_the_stored_secret_for_the_scope(world):
    make_static_provider(world.org, "legacy", {"reports:read": "rk_live_reports", "reports:write": "rk_live_writes"})
    world.agent.grants = [{"provider": "legacy", "scopes": ["reports:*"], "environments": ["prod"]}]
    world.agent.save()
    allow(world.org, provider="legacy")

    response = world.ask({"provider": "legacy", "scope": "reports:read", "ttl": "10m"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["credential"], body["token_type"]) == ("rk_live_reports", "static")
    record = IssuedCredential.objects.get()
    assert record.expires_at - record.issued_at == timedelta(minutes=10)
    assert "rk_live" not in str(AuditEvent.objects.values())


def test_static_provider_refuses_two_scopes_at_once(world):
    make_static_provider(world.org, "legacy", {"reports:read": "a", "reports:write": "b"})
    world.agent.grants = [{"provider": "legacy", "scopes": ["reports:*"], "environments": ["prod"]}]
    world.agent.save()
    allow(world.org, provider="legacy")
    assert_refused(world.ask({"provider": "legacy", "scope": "reports:read reports:write"}), 403, "scope_not_allowed")


def test_a_provider_kind_without_a_minter_is_502(world):
    make_provider(world.org, "gh", kind="retired_kind", scopes=["contents:read"])  # a kind no minter serves
    world.agent.grants = [{"provider": "gh", "scopes": ["*"], "environments": ["prod"]}]
    world.agent.save()
    allow(world.org, provider="gh")
    event = assert_refused(world.ask({"provider": "gh", "scope": "contents:read"}), 502, "native_mint_failed")
    assert event.detail["upstream_error"] == "kind_not_supported"


def test_the_hot_path_query_count_is_pinned(world, django_assert_num_queries):
    token = world.user_token()
    world.ask(token=token)  # first use: JWKS, signing key and the dev IdP key warm up
    # connector+org, agent, provider, policy candidates, active kid (credential), active kid (delegation
    # token), then one transaction: savepoint, insert record, savepoint, audit head lock, audit insert,
    # audit head update, revoked agents in the chain (re-checked under the chain lock), release, release;
    # and, before minting, the agent's live credentials (the outstanding cap).
    with django_assert_num_queries(16):
        assert world.ask(token=token).status_code == 200


def test_a_forged_delegation_signed_by_another_key_is_refused(world):
    from cryptography.hazmat.primitives.asymmetric import ec

    body = world.ask().json()
    claims = jwt.decode(body["delegation"]["token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(body["delegation"]["token"])["kid"]
    forged = jwt.encode(
        {**claims, "scope": "charges:read charges:write"},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": kid, "typ": "kw-deleg+jwt"},
    )
    make_agent(world.org, "sub-bot")
    assert_refused(world.ask(agent="sub-bot", token=None, delegation=forged), 401, "invalid_delegation", records=1)


def test_keyward_signed_token_of_the_wrong_type_is_not_a_delegation(world):
    now = int(time.time())
    credential_typed = sign_token(
        {"iss": "http://localhost:8000", "aud": "http://localhost:8000/v1/credentials", "sub": "x", "exp": now + 60},
        TokenType.CREDENTIAL,
    )
    assert_refused(world.ask(token=None, delegation=credential_typed), 401, "invalid_delegation")


def test_expired_records_do_not_count_as_live_delegations(world):
    body = world.ask().json()
    IssuedCredential.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    make_agent(world.org, "sub-bot")
    response = world.ask(agent="sub-bot", token=None, delegation=body["delegation"]["token"])
    assert response.status_code == 401
