"""The per-provider breaker through POST /v1/credentials: a dead provider fails fast, then recovers."""

import pytest

from broker.minters import resilience
from tests.broker.conftest import last_audit
from tests.broker.minters import setups
from tests.broker.minters.stubs import Reply

pytestmark = pytest.mark.django_db


def test_the_breaker_opens_fails_fast_and_recovers(world, stubs, monkeypatch):
    oauth = setups.oauth2_client_credentials(world, stubs)
    healthy = oauth.server.app
    oauth.server.app = lambda seen: Reply(500, {"error": "server_error"})
    for _ in range(resilience.FAILURE_THRESHOLD):
        assert oauth.ask(world).status_code == 502
    reached = oauth.server.count()
    assert reached == resilience.FAILURE_THRESHOLD * resilience.MAX_ATTEMPTS

    oauth.server.app = healthy  # the provider is back, but the breaker is open for OPEN_SECONDS
    response = oauth.ask(world)
    assert response.status_code == 502
    detail = last_audit("credential.denied").detail
    assert (detail["upstream_status"], detail["upstream_error"]) == (None, "circuit_open")
    assert oauth.server.count() == reached  # failed fast: the provider was not called

    monkeypatch.setattr(resilience, "OPEN_SECONDS", 0.0)  # the open period is over: one trial call
    assert oauth.ask(world).status_code == 200
    assert oauth.server.count() == reached + 1
    monkeypatch.setattr(resilience, "OPEN_SECONDS", 30.0)
    assert oauth.ask(world).status_code == 200  # closed again: calls flow


def test_a_failed_trial_call_opens_the_breaker_again(world, stubs, monkeypatch):
    github = setups.github_app(world, stubs)
    github.server.app = lambda seen: Reply(502, {"message": "Bad Gateway"})
    for _ in range(resilience.FAILURE_THRESHOLD):
        github.ask(world)
    monkeypatch.setattr(resilience, "OPEN_SECONDS", 0.0)
    before = github.server.count()
    assert github.ask(world).status_code == 502  # the trial call reaches GitHub and fails
    assert github.server.count() == before + resilience.MAX_ATTEMPTS
    monkeypatch.setattr(resilience, "OPEN_SECONDS", 30.0)
    assert github.ask(world).status_code == 502
    assert last_audit("credential.denied").detail["upstream_error"] == "circuit_open"
    assert github.server.count() == before + resilience.MAX_ATTEMPTS


def test_refusals_never_open_the_breaker(world, stubs):
    """A misconfigured client (4xx) is the provider working: other requests must keep flowing."""
    oauth = setups.oauth2_client_credentials(world, stubs)
    healthy = oauth.server.app
    oauth.server.app = lambda seen: Reply(400, {"error": "invalid_scope"})
    for _ in range(resilience.FAILURE_THRESHOLD + 2):
        assert oauth.ask(world).status_code == 502
    oauth.server.app = healthy
    assert oauth.ask(world).status_code == 200


def test_one_dead_provider_does_not_stop_another(world, stubs):
    oauth = setups.oauth2_client_credentials(world, stubs)
    github = setups.github_app(world, stubs)
    oauth.server.app = lambda seen: Reply(500, {"error": "server_error"})
    for _ in range(resilience.FAILURE_THRESHOLD + 1):
        oauth.ask(world)
    assert last_audit("credential.denied").detail["upstream_error"] == "circuit_open"
    assert github.ask(world).status_code == 200
