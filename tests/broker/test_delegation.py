"""Delegation chains: a sub-agent extends a chain with the delegation token; chains only narrow."""

import jwt
import pytest

from broker.models import IssuedCredential
from tests.broker.conftest import allow, last_audit, make_agent, make_provider

pytestmark = pytest.mark.django_db

FULL = {"provider": "stripe", "scope": "charges:read charges:write", "ttl": "10m"}


@pytest.fixture
def agents(world):
    """invoice-bot (root) → planner → worker → helper, each granted the stripe scopes."""
    for name in ("planner", "worker", "helper"):
        make_agent(world.org, name)
    return world


def delegate(world, token: str, agent: str, body: dict | None = None):
    return world.ask(
        body or {"provider": "stripe", "scope": "charges:read", "ttl": "10m"}, agent=agent, token=None, delegation=token
    )


def claims(credential: str) -> dict:
    return jwt.decode(credential, options={"verify_signature": False})


def test_a_chain_of_depth_three_works_and_nests_act_claims(agents):
    root = agents.ask(FULL).json()
    second = delegate(agents, root["delegation"]["token"], "planner").json()
    third_response = delegate(agents, second["delegation"]["token"], "worker")

    assert third_response.status_code == 200, third_response.content
    third = third_response.json()
    assert third["delegation"]["depth"] == 3
    assert third["delegation"]["chain"] == ["invoice-bot", "planner", "worker"]
    assert claims(third["credential"])["act"] == {
        "sub": "worker",
        "act": {"sub": "planner", "act": {"sub": "invoice-bot"}},
    }
    assert claims(third["credential"])["sub"] == "alice@example.com"
    record = IssuedCredential.objects.get(jti=third["credential_id"])
    assert record.parent.jti == second["credential_id"]
    assert record.parent.parent.jti == root["credential_id"]
    event = last_audit()
    assert event.delegation_chain == ["invoice-bot", "planner", "worker"]
    assert event.agent == "worker"


def test_depth_four_with_limit_three_is_too_deep(agents):
    token = agents.ask(FULL).json()["delegation"]["token"]
    for agent in ("planner", "worker"):
        token = delegate(agents, token, agent).json()["delegation"]["token"]

    response = delegate(agents, token, "helper")

    assert response.status_code == 403
    assert response.json()["error"] == "delegation_too_deep"
    assert last_audit().reason_code == "delegation_too_deep"
    assert IssuedCredential.objects.count() == 3


def test_the_org_limit_is_configurable(agents):
    agents.org.max_delegation_depth = 1
    agents.org.save()
    token = agents.ask(FULL).json()["delegation"]["token"]
    assert delegate(agents, token, "planner").json()["error"] == "delegation_too_deep"


def test_widening_the_scope_is_refused(agents):
    token = agents.ask({"provider": "stripe", "scope": "charges:read"}).json()["delegation"]["token"]
    response = delegate(agents, token, "planner", {"provider": "stripe", "scope": "charges:read charges:write"})
    assert response.status_code == 403
    assert response.json()["error"] == "scope_not_allowed"


def test_switching_provider_is_refused(agents):
    make_provider(agents.org, "github", scopes=["contents:read"])
    agents.agent.grants.append({"provider": "github", "scopes": ["*"], "environments": ["prod"]})
    agents.agent.save()
    planner = agents.org.agents.get(name="planner")
    planner.grants.append({"provider": "github", "scopes": ["*"], "environments": ["prod"]})
    planner.save()
    allow(agents.org, provider="github")
    token = agents.ask().json()["delegation"]["token"]

    response = delegate(agents, token, "planner", {"provider": "github", "scope": "contents:read"})

    assert response.status_code == 403
    assert response.json()["error"] == "scope_not_allowed"


def test_switching_environment_is_refused(agents):
    token = agents.ask().json()["delegation"]["token"]
    response = agents.ask(
        {"provider": "stripe", "scope": "charges:read"},
        agent="planner",
        token=None,
        delegation=token,
        environment="staging",
    )
    assert response.json()["error"] == "scope_not_allowed"


def test_the_child_never_outlives_the_parent(agents):
    root = agents.ask({"provider": "stripe", "scope": "charges:read", "ttl": "2m"}).json()
    child = delegate(
        agents, root["delegation"]["token"], "planner", {"provider": "stripe", "scope": "charges:read", "ttl": "1h"}
    ).json()
    assert claims(child["credential"])["exp"] <= claims(root["credential"])["exp"]
    assert child["expires_at"] <= root["expires_at"]


def test_a_cycle_is_refused(agents):
    token = agents.ask(FULL).json()["delegation"]["token"]
    token = delegate(agents, token, "planner").json()["delegation"]["token"]
    response = delegate(agents, token, "invoice-bot")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_delegation"


def test_a_revoked_parent_is_refused(agents):
    root = agents.ask(FULL).json()
    IssuedCredential.objects.filter(jti=root["credential_id"]).update(revoked_at="2026-01-01T00:00:00Z")
    response = delegate(agents, root["delegation"]["token"], "planner")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_delegation"


def test_the_sub_agent_still_needs_its_own_grant_and_policy(agents):
    planner = agents.org.agents.get(name="planner")
    planner.grants = [{"provider": "stripe", "scopes": ["refunds:read"], "environments": ["prod"]}]
    planner.save()
    token = agents.ask(FULL).json()["delegation"]["token"]
    assert delegate(agents, token, "planner").json()["error"] == "scope_not_allowed"


def test_the_chain_stays_in_its_org_when_another_org_has_an_agent_of_that_name(agents):
    """The delegation token, not the agent header, decides the org."""
    from tests.factories import make_org

    other = make_org("Other")
    make_agent(other, "planner")
    token = agents.ask(FULL).json()["delegation"]["token"]
    response = delegate(agents, token, "planner")
    record = IssuedCredential.objects.get(jti=response.json()["credential_id"])
    assert record.org == agents.org
    assert record.agent.org == agents.org


def test_revoking_the_root_revokes_the_leaves_and_their_delegations(agents):
    root = agents.ask(FULL).json()
    middle = delegate(agents, root["delegation"]["token"], "planner").json()
    leaf = delegate(agents, middle["delegation"]["token"], "worker").json()
    admin = make_admin_client(agents)

    response = admin.post(f"/v1/issued/{root['credential_id']}/revoke", {"reason": "incident 42"}, format="json")

    assert response.status_code == 200
    assert set(response.json()["revoked"]) == {root["credential_id"], middle["credential_id"], leaf["credential_id"]}
    assert IssuedCredential.objects.filter(revoked_at__isnull=True).count() == 0
    assert delegate(agents, leaf["delegation"]["token"], "helper").json()["error"] == "invalid_delegation"
    event = last_audit("credential.revoked")
    assert event.detail["revoked"] == 3
    assert event.credential_jti == root["credential_id"]


def make_admin_client(world):
    from rest_framework.test import APIClient

    from keyward.accounts.models import Role
    from tests.factories import make_account, make_session_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, Role.ADMIN))}")
    return client
