"""The issued-credential registry (/v1/issued), introspection keys and POST /v1/introspect."""

import pytest
from django.utils import timezone

from broker.models import IntrospectionKey, IssuedCredential
from keyward.audit.models import AuditEvent
from tests.broker.conftest import World, allow, make_agent, make_provider
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}


@pytest.fixture
def issued(callers):
    """Two credentials issued in the matrix org."""
    from rest_framework.test import APIClient

    world = World(
        org=callers.org, agent=make_agent(callers.org), provider=make_provider(callers.org), client=APIClient()
    )
    allow(callers.org, provider="stripe")
    first = world.ask().json()
    second = world.ask({"provider": "stripe", "scope": "refunds:read"}, token=world.user_token(sub="bob@example.com"))
    return world, first, second.json()


def test_list_and_filters(callers, issued):
    _, first, second = issued
    responses = assert_permission_matrix(callers, "GET", "/v1/issued", {**ADMIN, "other_org": 200})
    assert {row["jti"] for row in responses["admin"].json()} == {first["credential_id"], second["credential_id"]}
    assert responses["other_org"].json() == []
    rows = responses["admin"].json()
    assert all("credential" not in row for row in rows)
    assert first["credential"] not in responses["admin"].content.decode()

    client = callers.client("admin")
    assert [row["jti"] for row in client.get("/v1/issued", {"end_user": "bob@example.com"}).json()] == [
        second["credential_id"]
    ]
    assert len(client.get("/v1/issued", {"agent": "invoice-bot", "status": "active"}).json()) == 2
    assert client.get("/v1/issued", {"status": "revoked"}).json() == []
    assert client.get("/v1/issued", {"status": "sideways"}).status_code == 400


def test_retrieve_and_revoke_matrix(callers, issued):
    _, first, _ = issued
    path = f"/v1/issued/{first['credential_id']}"
    detail = assert_permission_matrix(callers, "GET", path, ADMIN)
    assert detail["admin"].json()["status"] == "active"
    revoke = assert_permission_matrix(callers, "POST", f"{path}/revoke", ADMIN, data={"reason": "leaked"})
    assert revoke["admin"].json()["revoked"] == [first["credential_id"]]
    assert revoke["owner"].json()["revoked"] == []  # already revoked: harmless, still audited
    record = IssuedCredential.objects.get(jti=first["credential_id"])
    assert (record.revoked_reason, record.revoked_at is not None) == ("leaked", True)
    assert AuditEvent.objects.filter(event_type="credential.revoked", org=callers.org).count() == 2


def test_introspection_key_matrix_and_shown_once(callers):
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/introspection-keys",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 201},
        data={"name": "payments-api"},
    )
    created = responses["admin"].json()
    assert created["key"].startswith("kw_intro_")
    stored = IntrospectionKey.objects.get(pk=created["introspection_key"]["id"])
    assert created["key"] not in {stored.key_hash, stored.prefix}
    listed = callers.client("admin").get("/v1/introspection-keys").json()
    assert created["key"] not in str(listed)
    assert_permission_matrix(
        callers,
        "DELETE",
        f"/v1/introspection-keys/{stored.pk}",
        {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 204, "owner": 204},
    )


def introspection_key(callers, who: str = "admin") -> str:
    return callers.client(who).post("/v1/introspection-keys", {"name": "rs"}, format="json").json()["key"]


def introspect(client, key: str | None, token: str):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post("/v1/introspect", {"token": token}, format="json", **headers)


def test_introspect_an_active_credential(callers, issued, api):
    _, first, _ = issued
    answer = introspect(api, introspection_key(callers), first["credential"]).json()
    assert answer["active"] is True
    assert (answer["sub"], answer["scope"], answer["jti"]) == (
        "alice@example.com",
        "charges:read",
        first["credential_id"],
    )
    assert answer["client_id"] == "invoice-bot"
    assert answer["act"] == {"sub": "invoice-bot"}
    assert answer["exp"] > timezone.now().timestamp()


def test_introspect_revoked_foreign_and_garbage_tokens_are_inactive(callers, issued, api):
    world, first, second = issued
    key = introspection_key(callers)
    IssuedCredential.objects.filter(jti=second["credential_id"]).update(revoked_at=timezone.now())
    other_org_key = introspection_key(callers, "other_org")

    assert introspect(api, key, second["credential"]).json() == {"active": False}
    assert introspect(api, other_org_key, first["credential"]).json() == {"active": False}
    assert introspect(api, key, first["delegation"]["token"]).json() == {"active": False}
    assert introspect(api, key, world.user_token()).json() == {"active": False}
    assert introspect(api, key, "garbage").json() == {"active": False}


def test_introspect_needs_a_live_introspection_key(callers, issued, api):
    _, first, _ = issued
    assert introspect(api, None, first["credential"]).status_code == 401
    assert introspect(api, "kw_intro_nope", first["credential"]).status_code == 401
    session = callers.client("admin")
    assert session.post("/v1/introspect", {"token": first["credential"]}, format="json").status_code == 401
    key = introspection_key(callers)
    IntrospectionKey.objects.update(revoked_at=timezone.now())
    assert introspect(api, key, first["credential"]).status_code == 401


@pytest.mark.parametrize("params", [{"agent": "a\x00b"}, {"end_user": "x" * 300}, {"provider": "p\x00"}])
def test_bad_filters_are_400_not_500(callers, issued, params):
    response = callers.client("admin").get("/v1/issued", params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
