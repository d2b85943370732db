"""Finding 1: revoking an agent revokes what it holds, and its delegation tokens die with it."""

from unittest import mock

import pytest
from rest_framework.test import APIClient

from broker import registry
from broker.models import IssuedCredential
from keyward.accounts.models import Role
from keyward.agents.models import Agent, AgentStatus
from keyward.audit.models import AuditEvent
from tests.broker.conftest import last_audit, make_agent
from tests.factories import make_account, make_session_token

pytestmark = pytest.mark.django_db

FULL = {"provider": "stripe", "scope": "charges:read charges:write", "ttl": "10m"}
NARROW = {"provider": "stripe", "scope": "charges:read", "ttl": "10m"}


@pytest.fixture
def chain(world):
    """invoice-bot → sub4 → sub5 (each a credential delegated from the one before), and an admin client."""
    for name in ("sub4", "sub5", "sub6"):
        make_agent(world.org, name)
    admin = APIClient()
    admin.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, Role.ADMIN))}")
    root = world.ask(FULL).json()
    sub4 = delegate(world, root["delegation"]["token"], "sub4").json()
    sub5 = delegate(world, sub4["delegation"]["token"], "sub5").json()
    return world, admin, root, sub4, sub5


def delegate(world, token: str, agent: str, body: dict | None = None):
    return world.ask(body or NARROW, agent=agent, token=None, delegation=token)


def introspect(world, credential: str) -> dict:
    key = registry.create_introspection_key(world.org, name="resource server").key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.post("/v1/introspect", {"token": credential}, format="json").json()


def test_revoking_an_agent_revokes_its_credentials_and_their_delegated_families(chain):
    world, admin, root, sub4, sub5 = chain
    assert introspect(world, sub4["credential"])["active"] is True

    response = admin.post("/v1/agents/sub4/revoke")

    assert response.status_code == 200, response.content
    assert introspect(world, sub4["credential"]) == {"active": False}
    assert introspect(world, sub5["credential"]) == {"active": False}  # delegated from sub4's
    assert introspect(world, root["credential"])["active"] is True  # the parent is not sub4's
    revoked = IssuedCredential.objects.filter(revoked_at__isnull=False)
    assert set(revoked.values_list("jti", flat=True)) == {sub4["credential_id"], sub5["credential_id"]}
    assert set(revoked.values_list("revoked_reason", flat=True)) == {registry.AGENT_REVOKED_REASON}
    # One audit row per family, after the agent's own row, in the same transaction.
    (family_row,) = AuditEvent.objects.filter(event_type="credential.revoked")
    assert family_row.credential_jti == sub4["credential_id"]
    assert family_row.detail["revoked"] == 2
    assert family_row.seq == AuditEvent.objects.get(event_type="agent.revoked").seq + 1


def test_the_revoked_agents_delegation_token_mints_nothing(chain):
    world, admin, _, sub4, _ = chain
    admin.post("/v1/agents/sub4/revoke")
    issued_before = IssuedCredential.objects.count()

    response = delegate(world, sub4["delegation"]["token"], "sub6")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_delegation"
    assert "credential" not in response.json()
    assert IssuedCredential.objects.count() == issued_before
    event = last_audit()
    assert (event.event_type, event.outcome, event.reason_code) == ("credential.denied", "denied", "invalid_delegation")
    assert event.org == world.org


def test_a_chain_holding_a_revoked_agent_is_refused_even_before_the_cascade(chain):
    """The agent row says revoked but its credentials were not (e.g. a cascade still in flight)."""
    world, _, _, sub4, _ = chain
    Agent.objects.filter(org=world.org, name="invoice-bot").update(status=AgentStatus.REVOKED)

    response = delegate(world, sub4["delegation"]["token"], "sub6")

    assert (response.status_code, response.json()["error"]) == (401, "invalid_delegation")
    assert "revoked" in response.json()["message"]
    assert not IssuedCredential.objects.filter(agent__name="sub6").exists()


def test_restoring_the_agent_restores_nothing_it_held(chain):
    world, admin, _, sub4, sub5 = chain
    admin.post("/v1/agents/sub4/revoke")

    assert admin.post("/v1/agents/sub4/restore").status_code == 200

    assert introspect(world, sub4["credential"]) == {"active": False}
    assert introspect(world, sub5["credential"]) == {"active": False}
    assert delegate(world, sub4["delegation"]["token"], "sub6").json()["error"] == "invalid_delegation"
    # The restored agent can be given new credentials.
    assert delegate(world, world.ask(FULL).json()["delegation"]["token"], "sub4").status_code == 200


def test_revoking_twice_revokes_nothing_more_and_records_nothing(chain):
    _, admin, _, _, _ = chain
    admin.post("/v1/agents/sub4/revoke")
    rows = AuditEvent.objects.count()
    assert admin.post("/v1/agents/sub4/revoke").status_code == 200
    assert AuditEvent.objects.count() == rows


def test_an_agent_revoked_while_its_credential_is_minted_gets_none(world):
    """The issuance re-checks the agent under the chain lock that revocation takes before its cascade."""
    from broker.minters import keyward_jwt

    real_mint = keyward_jwt.mint

    def mint_while_an_admin_revokes(request):
        minted = real_mint(request)
        Agent.objects.filter(pk=request.agent.pk).update(status=AgentStatus.REVOKED)  # committed meanwhile
        return minted

    with mock.patch.object(keyward_jwt, "mint", mint_while_an_admin_revokes):
        response = world.ask(NARROW)

    assert (response.status_code, response.json()["error"]) == (403, "agent_revoked")
    assert "credential" not in response.json()
    assert not IssuedCredential.objects.exists()
    assert not AuditEvent.objects.filter(event_type="credential.issued").exists()
    assert last_audit().reason_code == "agent_revoked"


def test_a_parent_revoked_while_the_child_is_minted_gives_no_child(chain):
    world, _, root, _, _ = chain
    from broker.minters import keyward_jwt

    real_mint = keyward_jwt.mint
    root_record = IssuedCredential.objects.get(jti=root["credential_id"])

    def mint_while_the_parent_is_revoked(request):
        minted = real_mint(request)
        registry.revoke(root_record, reason="leaked")
        return minted

    issued_before = IssuedCredential.objects.count()
    with mock.patch.object(keyward_jwt, "mint", mint_while_the_parent_is_revoked):
        response = delegate(world, root["delegation"]["token"], "sub6")

    assert (response.status_code, response.json()["error"]) == (401, "invalid_delegation")
    assert IssuedCredential.objects.count() == issued_before
    assert not IssuedCredential.objects.filter(revoked_at__isnull=True).exists()
