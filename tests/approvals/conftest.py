import pytest
from rest_framework.test import APIClient

from keyward.policies.models import Effect, Policy
from tests.broker.conftest import World, allow, make_agent, make_provider

WRITE = {"provider": "stripe", "scope": "charges:write", "ttl": "5m"}


@pytest.fixture
def parked(callers, django_capture_on_commit_callbacks):
    """The matrix org with an agent whose charges:write requests need a human; one request parked."""
    world = World(
        org=callers.org, agent=make_agent(callers.org), provider=make_provider(callers.org), client=APIClient()
    )
    allow(callers.org, provider="stripe")
    Policy.objects.create(org=callers.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    with django_capture_on_commit_callbacks(execute=True):  # deliver the outbox as a real commit would
        response = world.ask(WRITE)
    assert response.status_code == 202, response.content
    world.approval_id = response.json()["approval_id"]
    return world
