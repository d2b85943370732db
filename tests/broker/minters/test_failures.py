"""Every way a provider can fail, for each native kind: a 502 `native_mint_failed`, nothing recorded
but the audit row, which says the provider's status and error code and never what it sent back."""

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from broker.minters import http, resilience
from broker.models import IssuedCredential, RevocationHandle
from keyward.audit.models import AuditEvent
from tests.broker.conftest import last_audit
from tests.broker.minters import setups
from tests.broker.minters.stubs import Reply, Seen
from tests.factories import repoint_provider

pytestmark = pytest.mark.django_db


@dataclass
class Kind:
    name: str
    setup: Callable
    url_key: str  # the config key holding the URL keyward calls
    refused: dict  # the provider's JSON for a refused request
    refused_code: str  # what the audit row should say for it
    success_status: int
    missing_token: dict  # a 2xx answer without the credential

    def start(self, world, stubs):
        return self.setup(world, stubs)


KINDS = [
    Kind(
        "github_app",
        setups.github_app,
        "api_url",
        {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
        "bad_credentials",
        201,
        {"expires_at": "2099-01-01T00:00:00Z", "permissions": {"contents": "read"}},
    ),
    Kind(
        "oauth2_client_credentials",
        setups.oauth2_client_credentials,
        "token_url",
        {"error": "invalid_client", "error_description": "Client authentication failed."},
        "invalid_client",
        200,
        {"token_type": "Bearer", "expires_in": 300},
    ),
    Kind(
        "oauth2_token_exchange",
        setups.oauth2_token_exchange,
        "token_url",
        {"error": "invalid_grant", "error_description": "The subject token is not valid."},
        "invalid_grant",
        200,
        {"token_type": "Bearer", "issued_token_type": setups.ACCESS_TOKEN_TYPE},
    ),
]
KIND_IDS = [kind.name for kind in KINDS]


def ask(world, setup):
    """Ask for a credential; for token exchange the fake is told the user's token first."""
    token = world.user_token()
    if hasattr(setup, "subject_tokens"):
        setup.subject_tokens.append(token)
    return token, setup.ask(world, token=token)


def echoing(status: int, body: dict) -> Callable[[Seen], Reply]:
    """A provider that echoes what it was sent (credentials included) in its error answer."""

    def app(seen: Seen) -> Reply:
        return Reply(status, {**body, "echo": seen.header("Authorization") + seen.body.decode()})

    return app


def secrets_sent(setup, user_token: str) -> list[str]:
    """Everything secret keyward sent or could have received: none may reach an audit row or the answer."""
    values = [setups.CLIENT_SECRET, user_token, *setups.app_private_key_pem().splitlines()[1:-1]]
    for seen in setup.server.seen:
        values.append(seen.header("Authorization").partition(" ")[2])
        form = seen.form() or {}
        values += [form[name] for name in ("client_secret", "subject_token", "actor_token") if name in form]
    values += setup.fake.issued
    return [value for value in values if len(value) >= 8]


def assert_failed_cleanly(response, setup, user_token: str, *, status, error) -> None:
    assert response.status_code == 502, response.content
    assert response.json()["error"] == "native_mint_failed"
    assert not IssuedCredential.objects.exists()
    assert not RevocationHandle.objects.exists()
    event = last_audit()
    assert (event.event_type, event.reason_code) == ("credential.denied", "native_mint_failed")
    assert (event.detail["upstream_status"], event.detail["upstream_error"]) == (status, error)
    audit_text = json.dumps(list(AuditEvent.objects.values()), default=str)
    for value in secrets_sent(setup, user_token):
        assert value not in audit_text
        assert value not in response.content.decode()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_401_is_refused_with_the_providers_error_code_not_its_body(world, stubs, kind):
    setup = kind.start(world, stubs)
    setup.server.app = echoing(401, kind.refused)
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=401, error=kind.refused_code)
    assert setup.server.count() == 1  # a refusal is not retried


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_422_whose_error_member_echoes_a_secret_is_audited_as_a_bare_status(world, stubs, kind):
    setup = kind.start(world, stubs)

    def app(seen: Seen) -> Reply:
        sent = (seen.form() or {}).get("client_secret") or seen.header("Authorization")
        return Reply(422, {"error": sent, "message": sent})

    setup.server.app = app
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=422, error="http_422")


def test_422_from_github_for_permissions_the_installation_lacks(world, stubs):
    github = setups.github_app(world, stubs, granted={"contents": "read"})
    user_token = world.user_token()
    response = github.ask(world, scope="contents:write", token=user_token)
    assert_failed_cleanly(response, github, user_token, status=422, error="http_422")
    assert github.fake.issued == []


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_500_is_retried_a_bounded_number_of_times(world, stubs, kind):
    setup = kind.start(world, stubs)
    setup.server.app = echoing(500, {"error": "server_error", "message": "Server Error"})
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=500, error="server_error")
    assert setup.server.count() == resilience.MAX_ATTEMPTS


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_transient_500_is_retried_to_success(world, stubs, kind):
    setup = kind.start(world, stubs)
    real_app, calls = setup.server.app, []

    def flaky(seen: Seen) -> Reply:
        calls.append(seen)
        return Reply(503, {"message": "Service Unavailable"}) if len(calls) == 1 else real_app(seen)

    setup.server.app = flaky
    response = ask(world, setup)[1]
    assert response.status_code == 200, response.content
    assert setup.server.count() == 2


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_provider_that_never_answers_times_out(world, stubs, kind, monkeypatch):
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.2)
    setup = kind.start(world, stubs)
    hold = stubs.hold()
    setup.server.app = lambda seen: Reply(200, {"access_token": "late"}, hold=hold)
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=None, error="timeout")
    assert setup.server.count() == resilience.MAX_ATTEMPTS


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_connection_refused_is_retried_then_refused(world, stubs, kind, closed_port, connection_attempts):
    setup = kind.start(world, stubs)
    config = {**setup.provider.config, kind.url_key: f"http://127.0.0.1:{closed_port}/oauth/token"}
    repoint_provider(setup.provider, config)
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=None, error="unreachable")
    assert connection_attempts == [("127.0.0.1", closed_port)] * resilience.MAX_ATTEMPTS


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_malformed_json_is_a_bad_response(world, stubs, kind):
    setup = kind.start(world, stubs)
    setup.server.app = lambda seen: Reply(kind.success_status, body=b'{"access_token": "at_123", "token": ')
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=kind.success_status, error="bad_response")
    assert setup.server.count() == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("body", ["missing", "not an object", "empty"])
def test_an_answer_without_the_credential_is_a_bad_response(world, stubs, kind, body):
    setup = kind.start(world, stubs)
    answer = {"missing": kind.missing_token, "not an object": ["access_token", "token"], "empty": None}[body]
    setup.server.app = lambda seen: Reply(kind.success_status, answer)
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=kind.success_status, error="bad_response")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_429_is_not_retried(world, stubs, kind):
    setup = kind.start(world, stubs)
    setup.server.app = lambda seen: Reply(429, {"message": "slow down"}, headers={"Retry-After": "60"})
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=429, error="rate_limited")
    assert setup.server.count() == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_redirect_is_not_followed(world, stubs, kind):
    setup = kind.start(world, stubs)
    elsewhere = stubs.start(lambda seen: Reply(200, {"access_token": "stolen"}))
    setup.server.app = lambda seen: Reply(307, headers={"Location": elsewhere.url("/oauth/token")})
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=307, error="redirect_not_followed")
    assert elsewhere.count() == 0


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_the_ssrf_guard_still_holds_when_keyward_connects(world, stubs, kind, settings):
    """The URL passed the save-time check (private addresses allowed then); at connect time they are not."""
    setup = kind.start(world, stubs)
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=None, error="url_destination_not_allowed")
    assert setup.server.count() == 0


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_provider_config_edited_by_hand_fails_cleanly(world, stubs, kind):
    setup = kind.start(world, stubs)
    type(setup.provider).objects.filter(pk=setup.provider.pk).update(config={})
    user_token, response = ask(world, setup)
    assert_failed_cleanly(response, setup, user_token, status=None, error="provider_misconfigured")
    assert setup.server.count() == 0
