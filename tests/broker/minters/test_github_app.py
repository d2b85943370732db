"""`github_app` against a fake GitHub on 127.0.0.1 that checks the app JWT the way GitHub does."""

import json
from datetime import datetime, timedelta

import pytest
from django.forms.models import model_to_dict

from broker.minters import github_app as github_minter
from broker.models import IssuedCredential, RevocationHandle
from keyward.providers import services
from tests.broker.conftest import last_audit
from tests.broker.minters.setups import APP_ID, github_app
from tests.broker.minters.stubs import b64url_json
from tests.factories import make_rsa_private_key_pem

pytestmark = pytest.mark.django_db


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_mints_an_installation_token_down_scoped_to_the_requested_permissions(world, stubs):
    github = github_app(world, stubs, repositories=["invoices", "ledger"])
    response = github.ask(world, scope="contents:read issues:write")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "github_installation_token"
    assert body["credential"] == github.fake.issued[0]
    assert github.fake.bodies == [
        {"permissions": {"contents": "read", "issues": "write"}, "repositories": ["invoices", "ledger"]}
    ]
    record = IssuedCredential.objects.get(jti=body["credential_id"])
    assert record.revocable_upstream is True
    assert record.native["permissions"] == {"contents": "read", "issues": "write", "metadata": "read"}
    assert record.native["repository_selection"] == "selected"
    assert record.native["repositories"] == ["invoices", "ledger"]
    assert body["credential"] not in json.dumps(model_to_dict(record), default=str)
    assert body["credential"] not in json.dumps(model_to_dict(last_audit("credential.issued")), default=str)


def test_the_app_jwt_is_rs256_signed_with_the_app_key_and_short_lived(world, stubs):
    github = github_app(world, stubs)
    assert github.ask(world).status_code == 200

    (seen,) = [seen for seen in github.server.seen if seen.method == "POST"]
    scheme, _, jwt = seen.header("Authorization").partition(" ")
    assert scheme == "Bearer"
    assert b64url_json(jwt.split(".")[0]) == {"alg": "RS256", "typ": "JWT"}
    (claims,) = github.fake.claims  # the fake verified the signature against the app's public key
    assert claims["iss"] == APP_ID
    assert 0 < claims["exp"] - claims["iat"] <= 600
    assert seen.header("Accept") == "application/vnd.github+json"
    assert seen.header("X-GitHub-Api-Version") == github_minter.API_VERSION


def test_a_jwt_signed_with_another_key_is_refused_by_github(world, stubs):
    """The fake really checks the signature: an app whose stored key is not the registered one gets 401."""
    github = github_app(world, stubs)
    services.rotate_secret(github.provider, secret=make_rsa_private_key_pem())
    response = github.ask(world)
    assert response.status_code == 502
    assert last_audit("credential.denied").detail["upstream_status"] == 401
    assert github.fake.issued == []


def test_permissions_map_and_the_highest_level_wins(world, stubs):
    github = github_app(world, stubs, permissions_map={"ship": {"contents": "write", "pull_requests": "read"}})
    assert github.ask(world, scope="ship contents:read").status_code == 200
    assert github.fake.bodies[-1] == {"permissions": {"contents": "write", "pull_requests": "read"}}


def test_a_scope_that_maps_to_no_permission_is_refused_before_calling_github(world, stubs):
    github = github_app(world, stubs)
    for scope in ("deploy", "contents:own", "Contents:read"):
        response = github.ask(world, scope=scope)
        assert response.status_code == 403, scope
        assert response.json()["error"] == "scope_not_allowed"
    assert github.server.count() == 0
    assert not IssuedCredential.objects.exists()


def test_keyward_expiry_is_never_later_than_githubs(world, stubs):
    github = github_app(world, stubs)
    github.fake.token_lifetime = timedelta(minutes=2)
    short = github.ask(world, ttl="10m").json()
    assert parse_time(short["expires_at"]) == parse_time(
        IssuedCredential.objects.get(jti=short["credential_id"]).native["expires_at"]
    )

    github.fake.token_lifetime = timedelta(hours=1)
    long = github.ask(world, ttl="5m").json()
    record = IssuedCredential.objects.get(jti=long["credential_id"])
    assert parse_time(long["expires_at"]) == record.expires_at < parse_time(record.native["expires_at"])
    assert (record.expires_at - record.issued_at) == timedelta(minutes=5)


def test_github_granting_more_than_asked_is_refused_and_the_token_discarded(world, stubs):
    github = github_app(world, stubs)
    github.fake.extra_permissions = {"administration": "write"}
    response = github.ask(world)

    assert response.status_code == 502
    detail = last_audit("credential.denied").detail
    assert (detail["upstream_status"], detail["upstream_error"]) == (201, "permissions_exceeded")
    assert github.fake.revoked == github.fake.issued  # revoked upstream at once, never handed out
    assert github.fake.issued[0] not in response.content.decode()
    assert not IssuedCredential.objects.exists()
    assert not RevocationHandle.objects.exists()


def test_the_revocation_handle_is_sealed_and_bound_to_the_credential(world, stubs):
    github = github_app(world, stubs)
    body = github.ask(world).json()
    handle = RevocationHandle.objects.get()
    assert handle.credential_id == body["credential_id"]
    assert handle.org == world.org
    assert body["credential"].encode() not in bytes(handle.ciphertext)
    assert json.loads(handle.unseal_secret()) == {"api_url": github.server.url(), "token": body["credential"]}
    assert parse_time(body["expires_at"]) == handle.expires_at
