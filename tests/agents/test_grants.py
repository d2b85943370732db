"""`grant_allows`: the broker's grant check. Pure logic over an unsaved agent, so no database."""

import pytest

from keyward.agents.models import Agent
from keyward.agents.services import grant_allows


def agent_with(*grants: dict) -> Agent:
    return Agent(name="invoice-bot", grants=list(grants))


def grant(provider: str = "stripe", scopes=("charges:read",), environments=("prod",)) -> dict:
    return {"provider": provider, "scopes": list(scopes), "environments": list(environments)}


def allows(agent: Agent, scopes: list[str], provider: str = "stripe", environment: str = "prod") -> bool:
    return grant_allows(agent, provider=provider, scopes=scopes, environment=environment)


def test_an_exact_scope_is_allowed_only_for_itself():
    agent = agent_with(grant(scopes=["charges:read"]))
    assert allows(agent, ["charges:read"])
    assert not allows(agent, ["charges:write"])
    assert not allows(agent, ["charges:read:all"])
    assert not allows(agent, ["charges"])


def test_a_prefix_wildcard_covers_the_scopes_below_it_only():
    agent = agent_with(grant(scopes=["charges:*"]))
    assert allows(agent, ["charges:read"])
    assert allows(agent, ["charges:refunds:write"])
    assert not allows(agent, ["charges"])
    assert not allows(agent, ["chargesx:read"])
    assert not allows(agent, ["refunds:read"])


def test_a_star_scope_covers_everything_of_that_provider_only():
    agent = agent_with(grant(scopes=["*"]))
    assert allows(agent, ["charges:read", "anything:else"])
    assert not allows(agent, ["charges:read"], provider="github")


def test_several_scopes_need_every_one_covered():
    agent = agent_with(grant(scopes=["charges:read", "refunds:*"]))
    assert allows(agent, ["charges:read", "refunds:create"])
    assert not allows(agent, ["charges:read", "charges:write"])


def test_the_environment_must_be_listed_or_star():
    agent = agent_with(grant(environments=["staging", "dev"]))
    assert allows(agent, ["charges:read"], environment="staging")
    assert not allows(agent, ["charges:read"], environment="prod")
    assert allows(agent_with(grant(environments=["*"])), ["charges:read"], environment="prod")


def test_the_provider_must_match_exactly():
    agent = agent_with(grant(provider="stripe"))
    assert not allows(agent, ["charges:read"], provider="stripe-test")
    assert not allows(agent, ["charges:read"], provider="STRIPE")


def test_scopes_split_across_two_grants_are_refused():
    """Decision: one grant must cover the whole request (see grant_allows' docstring)."""
    agent = agent_with(grant(scopes=["charges:read"]), grant(scopes=["refunds:read"]))
    assert allows(agent, ["charges:read"])
    assert allows(agent, ["refunds:read"])
    assert not allows(agent, ["charges:read", "refunds:read"])


def test_a_scope_and_an_environment_from_different_grants_do_not_combine():
    agent = agent_with(
        grant(scopes=["charges:read"], environments=["staging"]),
        grant(scopes=["refunds:read"], environments=["prod"]),
    )
    assert not allows(agent, ["charges:read"], environment="prod")
    assert allows(agent, ["charges:read"], environment="staging")


def test_any_one_matching_grant_is_enough():
    agent = agent_with(grant(provider="github", scopes=["*"]), grant(scopes=["charges:read"], environments=["prod"]))
    assert allows(agent, ["charges:read"])


@pytest.mark.parametrize(
    "grants",
    [
        [],
        None,
        ["not a grant"],
        [{"provider": "stripe"}],
        [{"provider": "stripe", "scopes": ["charges:read"]}],
        [{"provider": "stripe", "environments": ["prod"]}],
    ],
)
def test_no_or_malformed_grants_allow_nothing(grants):
    assert not allows(Agent(name="bot", grants=grants), ["charges:read"])


def test_an_empty_request_is_refused():
    assert not allows(agent_with(grant(scopes=["*"], environments=["*"])), [])
