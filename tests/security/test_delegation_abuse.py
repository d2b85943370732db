"""Delegation abuse: a sub-agent holding a delegation token tries to get more than its parent had.

A delegated request may only narrow (DESIGN.md §4): the same provider and environment, a subset of
the scopes, no later expiry, no agent twice, a live parent, at most the org's depth. The token only
names its parent record; what the parent may do is read from the record, so forging or re-signing
the token's claims gains nothing either.
"""

from datetime import datetime

import pytest

from broker import registry
from broker.models import IssuedCredential
from tests.broker.conftest import allow, make_agent, make_provider
from tests.factories import make_account, make_org, make_session_token
from tests.security import forge
from tests.security.expect import Baseline, refused, token_refusal_chain
from tests.security.targets import keyward_signing_key

pytestmark = pytest.mark.django_db

ROOT_ASK = {"provider": "stripe", "scope": "charges:read", "ttl": "10m"}


@pytest.fixture
def chain(world):
    """invoice-bot (root) → planner → worker → helper, each with its own grant for the stripe scopes."""
    for name in ("planner", "worker", "helper"):
        make_agent(world.org, name)
    return world


def delegate(world, token: str, agent: str, body: dict | None = None, **headers):
    return world.ask(body or ROOT_ASK, agent=agent, token=None, delegation=token, **headers)


def root_token(world, body: dict | None = None) -> dict:
    response = world.ask(body or ROOT_ASK)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(
    ("body", "environment"),
    [
        ({"provider": "stripe", "scope": "charges:read charges:write"}, None),  # widen the scope
        ({"provider": "stripe", "scope": "charges:write"}, None),  # swap it for a sibling scope
        ({"provider": "stripe", "scope": "charges:*"}, None),  # a pattern covering more
        ({"provider": "stripe", "scope": "refunds:read"}, None),  # one the parent never had
        ({"provider": "github", "scope": "contents:read"}, None),  # another provider
        ({"provider": "stripe", "scope": "charges:read"}, "staging"),  # another environment
    ],
    ids=["wider-scope", "sibling-scope", "scope-pattern", "other-scope", "other-provider", "other-environment"],
)
def test_a_delegated_request_cannot_widen_anything(chain, body, environment):
    make_provider(chain.org, "github", scopes=["contents:read"])
    for agent in chain.org.agents.all():
        agent.grants = [*agent.grants, {"provider": "github", "scopes": ["*"], "environments": ["prod"]}]
        agent.save()
    allow(chain.org, provider="github")
    token = root_token(chain)["delegation"]["token"]
    before = Baseline.take()

    response = delegate(chain, token, "planner", body, environment=environment)

    if body["scope"] == "charges:*":
        refused(response, 400, "invalid_request", before=before, chain=None)  # patterns are for grants, not asks
    else:
        refused(response, 403, "scope_not_allowed", before=before, chain=chain.org)


def test_a_delegated_request_cannot_outlive_its_parent(chain):
    root = root_token(chain, {**ROOT_ASK, "ttl": "2m"})
    parent_expiry = datetime.fromisoformat(root["expires_at"])

    response = delegate(chain, root["delegation"]["token"], "planner", {**ROOT_ASK, "ttl": "24h"})

    assert response.status_code == 200, response.content
    child = response.json()
    assert datetime.fromisoformat(child["expires_at"]) <= parent_expiry
    assert forge.split(child["credential"])[1]["exp"] <= forge.split(root["credential"])[1]["exp"]
    assert forge.split(child["delegation"]["token"])[1]["exp"] <= int(parent_expiry.timestamp())
    record = IssuedCredential.objects.get(jti=child["credential_id"])
    assert record.expires_at <= parent_expiry


def test_a_cycle_is_refused(chain):
    token = root_token(chain)["delegation"]["token"]
    token = delegate(chain, token, "planner").json()["delegation"]["token"]
    before = Baseline.take()

    response = delegate(chain, token, "invoice-bot")

    row = refused(response, 401, "invalid_delegation", before=before, chain=chain.org)
    assert row.delegation_chain == ["invoice-bot", "planner", "invoice-bot"]


def test_a_sub_agent_cannot_delegate_to_itself(chain):
    token = root_token(chain)["delegation"]["token"]
    token = delegate(chain, token, "planner").json()["delegation"]["token"]
    before = Baseline.take()
    refused(delegate(chain, token, "planner"), 401, "invalid_delegation", before=before, chain=chain.org)


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_one_agent_past_the_orgs_depth_limit_is_refused(chain, limit):
    chain.org.max_delegation_depth = limit
    chain.org.save()
    agents = ["planner", "worker", "helper"]
    token = root_token(chain)["delegation"]["token"]
    for agent in agents[: limit - 1]:
        response = delegate(chain, token, agent)
        assert response.status_code == 200, response.content
        token = response.json()["delegation"]["token"]
    before = Baseline.take()

    response = delegate(chain, token, agents[limit - 1])

    row = refused(response, 403, "delegation_too_deep", before=before, chain=chain.org)
    assert row.detail["depth"] == limit + 1


def test_a_revoked_parent_is_refused(chain):
    root = root_token(chain)
    owner = make_account(chain.org, "owner")
    revoke = chain.client.post(
        f"/v1/issued/{root['credential_id']}/revoke",
        {"reason": "incident"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {make_session_token(owner)}",
    )
    assert revoke.status_code == 200, revoke.content
    before = Baseline.take()

    response = delegate(chain, root["delegation"]["token"], "planner")

    refused(response, 401, "invalid_delegation", before=before, chain=token_refusal_chain(chain.org))


def test_a_revoked_grandparent_is_refused_through_its_child(chain):
    root = root_token(chain)
    child = delegate(chain, root["delegation"]["token"], "planner").json()
    registry.revoke(IssuedCredential.objects.get(jti=root["credential_id"]), reason="incident")
    before = Baseline.take()

    response = delegate(chain, child["delegation"]["token"], "worker")

    refused(response, 401, "invalid_delegation", before=before, chain=token_refusal_chain(chain.org))


def test_another_orgs_delegation_token_cannot_reach_this_orgs_agents(chain):
    """The token decides the org: presented with this org's agent name, it stays in its own org."""
    other = make_org("Globex")
    make_agent(other, "invoice-bot")
    make_provider(other)
    allow(other, provider="stripe")
    foreign = chain.ask(token=chain.user_token(org=other)).json()["delegation"]["token"]
    before = Baseline.take()

    response = delegate(chain, foreign, "planner")  # planner exists in this org only

    row = refused(response, 404, "unknown_agent", before=before, chain=other)
    assert row.delegation_chain == ["invoice-bot"]


def test_an_altered_delegation_token_is_refused(chain):
    token = root_token(chain)["delegation"]["token"]
    claims = forge.split(token)[1]
    for altered in (
        forge.tampered(token, scope="charges:read charges:write"),
        forge.tampered(token, depth=0, chain=[]),
        forge.tampered(token, exp=claims["exp"] + 86400),
        forge.tampered(token, org=claims["org"] + 1),
    ):
        before = Baseline.take()
        refused(
            delegate(chain, altered, "planner"),
            401,
            "invalid_delegation",
            before=before,
            chain=token_refusal_chain(chain.org),
        )


def test_re_signed_claims_gain_nothing_the_parent_record_decides(chain):
    """Even a token signed with keyward's own key cannot lift the record's scope, depth or org."""
    root = root_token(chain)
    token, key = root["delegation"]["token"], keyward_signing_key()
    claims = forge.split(token)[1]

    wider = forge.resign(token, key, claims={"scope": "charges:read charges:write", "depth": 0, "chain": []})
    before = Baseline.take()
    refused(
        delegate(chain, wider, "planner", {"provider": "stripe", "scope": "charges:write"}),
        403,
        "scope_not_allowed",
        before=before,
        chain=chain.org,
    )

    other = make_org("Globex")
    for claims_override in ({"org": other.pk}, {"cred": "0" * 32}, {"jti": "0" * 32}):
        moved = forge.resign(token, key, claims=claims_override)
        before = Baseline.take()
        refused(
            delegate(chain, moved, "planner"),
            401,
            "invalid_delegation",
            before=before,
            chain=token_refusal_chain(chain.org),
        )
    assert claims["org"] == chain.org.pk
