"""Revoking a GitHub credential in keyward revokes its token at GitHub too, and audits what GitHub said."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from broker import registry
from broker.models import IssuedCredential, RevocationHandle
from keyward.accounts.models import Role
from keyward.audit.models import AuditEvent
from tests.broker.conftest import last_audit, make_agent
from tests.broker.minters import setups
from tests.broker.minters.stubs import Reply
from tests.factories import make_account, make_session_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(world) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, Role.ADMIN))}")
    return client


def revoke(admin, jti: str, capture) -> dict:
    """POST /v1/issued/<jti>/revoke; upstream revocation runs once the revocation has committed."""
    with capture(execute=True):
        response = admin.post(f"/v1/issued/{jti}/revoke", {"reason": "leaked"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def upstream_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="credential.upstream_revoked").order_by("id"))


def test_revoking_reaches_githubs_delete_with_the_token(world, stubs, admin, django_capture_on_commit_callbacks):
    github = setups.github_app(world, stubs)
    body = github.ask(world).json()

    assert revoke(admin, body["credential_id"], django_capture_on_commit_callbacks)["revoked"] == [
        body["credential_id"]
    ]
    (delete,) = [seen for seen in github.server.seen if seen.method == "DELETE"]
    assert delete.path == "/installation/token"
    assert delete.header("Authorization") == f"Bearer {body['credential']}"
    assert github.fake.revoked == [body["credential"]]
    (event,) = upstream_events()
    assert (event.outcome, event.reason_code, event.credential_jti) == ("success", "", body["credential_id"])
    assert event.detail == {"upstream_status": None, "upstream_error": ""}
    assert body["credential"] not in json.dumps(list(AuditEvent.objects.values()), default=str)
    assert not RevocationHandle.objects.exists()


def test_a_failing_upstream_revocation_is_audited_and_keywards_stands(
    world, stubs, admin, django_capture_on_commit_callbacks
):
    github = setups.github_app(world, stubs)
    body = github.ask(world).json()
    github.fake.fail_revoke_with = Reply(500, {"message": "Server Error"})

    revoke(admin, body["credential_id"], django_capture_on_commit_callbacks)
    record = IssuedCredential.objects.get(jti=body["credential_id"])
    assert record.revoked_at is not None
    assert last_audit("credential.revoked").credential_jti == body["credential_id"]
    (event,) = upstream_events()
    assert (event.outcome, event.reason_code) == ("failure", "server_error")
    assert event.detail == {"upstream_status": 500, "upstream_error": "server_error"}
    assert github.server.count("DELETE") == 3  # retried like a mint
    assert RevocationHandle.objects.filter(credential_id=body["credential_id"]).exists()  # kept for a retry

    github.fake.fail_revoke_with = None
    revoke(admin, body["credential_id"], django_capture_on_commit_callbacks)  # nothing new in keyward; retried upstream
    assert github.fake.revoked == [body["credential"]]
    assert [event.outcome for event in upstream_events()] == ["failure", "success"]
    assert not RevocationHandle.objects.exists()


def test_a_token_github_no_longer_knows_is_a_final_failure(world, stubs, admin, django_capture_on_commit_callbacks):
    github = setups.github_app(world, stubs)
    body = github.ask(world).json()
    github.fake.revoked.append(body["credential"])  # e.g. the app's owner revoked it on GitHub already

    revoke(admin, body["credential_id"], django_capture_on_commit_callbacks)
    (event,) = upstream_events()
    assert event.detail == {"upstream_status": 401, "upstream_error": "bad_credentials"}
    assert not RevocationHandle.objects.exists()  # a retry cannot help


def test_revoking_a_chain_revokes_every_token_upstream(world, stubs, admin, django_capture_on_commit_callbacks):
    github = setups.github_app(world, stubs)
    make_agent(world.org, "sub-bot", grants=[{"provider": "github", "scopes": ["*"], "environments": ["prod"]}])
    root = github.ask(world, scope="contents:read issues:write").json()
    child = world.ask(
        {"provider": "github", "scope": "contents:read", "ttl": "1m"},
        agent="sub-bot",
        token=None,
        delegation=root["delegation"]["token"],
    ).json()
    assert child["credential"] != root["credential"]

    revoked = revoke(admin, root["credential_id"], django_capture_on_commit_callbacks)["revoked"]
    assert set(revoked) == {root["credential_id"], child["credential_id"]}
    assert set(github.fake.revoked) == {root["credential"], child["credential"]}
    assert {event.credential_jti for event in upstream_events()} == set(revoked)


def test_kinds_that_cannot_revoke_upstream_keep_no_handle(world, stubs, admin, django_capture_on_commit_callbacks):
    oauth = setups.oauth2_client_credentials(world, stubs)
    body = oauth.ask(world).json()
    assert not RevocationHandle.objects.exists()
    assert IssuedCredential.objects.get(jti=body["credential_id"]).revocable_upstream is False
    revoke(admin, body["credential_id"], django_capture_on_commit_callbacks)
    assert upstream_events() == []
    assert oauth.server.count() == 1


def test_a_handle_copied_onto_another_credential_does_not_open(world, stubs, admin, django_capture_on_commit_callbacks):
    """A database attacker swapping sealed handles gains nothing: each is sealed to its own org and jti."""
    github = setups.github_app(world, stubs)
    victim = github.ask(world).json()
    other = github.ask(world).json()
    stolen = RevocationHandle.objects.get(credential_id=victim["credential_id"])
    RevocationHandle.objects.filter(credential_id=other["credential_id"]).update(
        ciphertext=stolen.ciphertext, wrapped_key=stolen.wrapped_key, kek_id=stolen.kek_id
    )

    revoke(admin, other["credential_id"], django_capture_on_commit_callbacks)
    (event,) = upstream_events()
    assert (event.outcome, event.reason_code) == ("failure", "handle_unreadable")
    assert github.server.count("DELETE") == 0
    assert github.fake.revoked == []


def test_expired_handles_are_pruned_when_a_new_one_is_stored(world, stubs):
    github = setups.github_app(world, stubs)
    first = github.ask(world).json()
    RevocationHandle.objects.filter(credential_id=first["credential_id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = github.ask(world).json()
    assert list(RevocationHandle.objects.values_list("credential_id", flat=True)) == [second["credential_id"]]


def test_an_expired_handle_is_dropped_without_calling_the_provider(world, stubs):
    github = setups.github_app(world, stubs)
    body = github.ask(world).json()
    RevocationHandle.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    record = IssuedCredential.objects.get(jti=body["credential_id"])
    registry.revoke_upstream([record.pk])
    assert not RevocationHandle.objects.exists()
    assert github.server.count("DELETE") == 0
    assert upstream_events() == []


def test_revoking_the_agent_revokes_its_github_token_upstream(world, stubs, admin, django_capture_on_commit_callbacks):
    github = setups.github_app(world, stubs)
    body = github.ask(world).json()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/v1/agents/{world.agent.name}/revoke")

    assert response.status_code == 200, response.content
    assert github.fake.revoked == [body["credential"]]
    (event,) = upstream_events()
    assert (event.outcome, event.credential_jti) == ("success", body["credential_id"])
    assert IssuedCredential.objects.get(jti=body["credential_id"]).revoked_reason == registry.AGENT_REVOKED_REASON
    assert not RevocationHandle.objects.exists()
