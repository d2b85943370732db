import hashlib
import json
import logging
import secrets

import pytest

from keyward.audit.models import AuditEvent
from keyward.providers.models import Provider, ProviderSecret
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN_ONLY = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}
OAUTH_CONFIG = {"token_url": "https://auth.example.com/oauth/token", "client_id": "keyward"}
GITHUB_CONFIG = {"app_id": 42, "installation_id": 7}


def new_secret() -> str:
    return "sk_live_" + secrets.token_hex(24)


def create(callers, who: str = "admin", **body):
    return callers.client(who).post("/v1/secrets", body, format="json")


def created(callers, who: str = "admin", **body) -> dict:
    response = create(callers, who, **body)
    assert response.status_code == 201, response.content
    return response.json()


def all_audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def test_create_matrix_and_shape(callers):
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/secrets",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 201},
        data=lambda who: {"name": f"stripe-{who.replace('_', '-')}", "kind": "keyward_jwt", "scopes": ["charges:read"]},
    )
    body = responses["admin"].json()
    assert body == {
        "name": "stripe-admin",
        "kind": "keyward_jwt",
        "description": "",
        "config": {"audience": "stripe-admin"},
        "scopes": ["charges:read"],
        "max_ttl_seconds": 3600,
        "secret": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    event = AuditEvent.objects.get(org=callers.org, event_type="provider.created", provider="stripe-admin")
    assert event.actor_id == str(callers.admin.pk)
    assert event.detail["kind"] == "keyward_jwt"
    assert Provider.objects.get(name="stripe-other-org").org != callers.org


def test_list_retrieve_patch_rotate_matrix(callers):
    plaintext = new_secret()
    created(callers, name="github", kind="oauth2_client_credentials", config=OAUTH_CONFIG, secret=plaintext)
    listed = assert_permission_matrix(callers, "GET", "/v1/secrets", {**ADMIN_ONLY, "other_org": 200})
    assert [row["name"] for row in listed["admin"].json()] == ["github"]
    assert listed["other_org"].json() == []
    assert listed["admin"].json()[0]["secret"]["version"] == 1

    fetched = assert_permission_matrix(callers, "GET", "/v1/secrets/github", ADMIN_ONLY)
    assert fetched["admin"].json()["secret"]["fingerprint"] == hashlib.sha256(plaintext.encode()).hexdigest()[:16]

    patched = assert_permission_matrix(
        callers, "PATCH", "/v1/secrets/github", ADMIN_ONLY, data={"description": "GitHub App", "max_ttl_seconds": 600}
    )
    assert patched["owner"].json()["description"] == "GitHub App"
    assert patched["owner"].json()["max_ttl_seconds"] == 600
    updates = AuditEvent.objects.filter(org=callers.org, event_type="provider.updated")
    assert [event.detail["changed"] for event in updates] == [["description", "max_ttl_seconds"]]

    rotated = assert_permission_matrix(
        callers, "POST", "/v1/secrets/github/rotate", ADMIN_ONLY, data=lambda who: {"secret": new_secret()}
    )
    assert rotated["admin"].json()["secret"]["version"] == 2
    assert rotated["owner"].json()["secret"]["version"] == 3
    assert AuditEvent.objects.filter(org=callers.org, event_type="provider.secret_rotated").count() == 2


def test_another_orgs_provider_is_404(callers):
    created(callers, "other_org", name="stripe", kind="keyward_jwt")
    admin = callers.client("admin")
    assert admin.get("/v1/secrets/stripe").status_code == 404
    assert admin.patch("/v1/secrets/stripe", {"description": "x"}, format="json").status_code == 404
    assert admin.post("/v1/secrets/stripe/rotate", {"secret": new_secret()}, format="json").status_code == 404
    assert Provider.objects.get().description == ""


def test_the_same_name_twice_is_409_and_other_orgs_may_reuse_it(callers):
    created(callers, name="stripe", kind="keyward_jwt")
    again = create(callers, name="stripe", kind="static", secret={"a:b": new_secret()})
    assert again.status_code == 409
    assert again.json()["error"] == "provider_exists"
    assert create(callers, "other_org", name="stripe", kind="keyward_jwt").status_code == 201


def test_keyward_jwt_takes_an_audience_and_no_secret(callers):
    body = created(callers, name="internal-api", kind="keyward_jwt", config={"audience": "https://api.acme.test"})
    assert body["config"] == {"audience": "https://api.acme.test"}
    refused = create(callers, name="jwt-with-secret", kind="keyward_jwt", secret=new_secret())
    assert refused.status_code == 400
    assert "secret" in refused.json()["fields"]
    rotate = callers.client("admin").post("/v1/secrets/internal-api/rotate", {"secret": new_secret()}, format="json")
    assert rotate.status_code == 400
    assert rotate.json()["error"] == "invalid_secret"
    assert not ProviderSecret.objects.exists()


def test_static_secret_keys_become_the_scope_catalogue(callers):
    values = {"charges:read": new_secret(), "refunds:write": new_secret()}
    body = created(callers, name="stripe", kind="static", secret=values)
    assert body["scopes"] == ["charges:read", "refunds:write"]
    assert body["config"] == {}
    assert body["secret"]["version"] == 1

    rotated = callers.client("admin").post(
        "/v1/secrets/stripe/rotate", {"secret": {"charges:read": new_secret()}}, format="json"
    )
    assert rotated.status_code == 200
    assert rotated.json()["scopes"] == ["charges:read"]


def test_static_scopes_cannot_be_set_by_hand(callers):
    refused = create(callers, name="stripe", kind="static", scopes=["a:b"], secret={"a:b": new_secret()})
    assert refused.status_code == 400
    assert "scopes" in refused.json()["fields"]
    created(callers, name="stripe", kind="static", secret={"a:b": new_secret()})
    patch = callers.client("admin").patch("/v1/secrets/stripe", {"scopes": ["a:b", "c:d"]}, format="json")
    assert patch.status_code == 400
    assert Provider.objects.get().scopes == ["a:b"]


def test_aws_sts_takes_a_checked_config_and_an_access_key_pair(callers):
    statement = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}
    config = {
        "role_arn": "arn:aws:iam::123456789012:role/agents",
        "region": "eu-west-1",
        "scope_policies": {"s3:read": {"Version": "2012-10-17", "Statement": statement}},
    }
    secret = {"access_key_id": "AKIA" + "A" * 16, "secret_access_key": secrets.token_hex(20)}
    body = created(callers, name="aws", kind="aws_sts", config=config, secret=secret, scopes=["s3:read"])
    assert body["config"]["scope_policies"] == {"s3:read": [statement]}
    assert body["scopes"] == ["s3:read"]
    assert body["secret"]["version"] == 1
    assert secret["secret_access_key"] not in json.dumps(body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "stripe", "kind": "stripe_magic"}, "kind"),
        ({"name": "stripe"}, "kind"),
        ({"kind": "keyward_jwt"}, "name"),
        ({"name": "Stripe", "kind": "keyward_jwt"}, "name"),
        ({"name": "stripe/live", "kind": "keyward_jwt"}, "name"),
        ({"name": "s" * 101, "kind": "keyward_jwt"}, "name"),
        ({"name": "stripe", "kind": "keyward_jwt", "config": ["audience"]}, "config"),
        ({"name": "stripe", "kind": "keyward_jwt", "config": {"audience": ""}}, "config"),
        ({"name": "stripe", "kind": "keyward_jwt", "config": {"audience": 7}}, "config"),
        ({"name": "stripe", "kind": "keyward_jwt", "config": {"audience": "a\nb"}}, "config"),
        ({"name": "stripe", "kind": "keyward_jwt", "config": {"issuer": "me"}}, "config"),
        ({"name": "stripe", "kind": "static", "config": {"x": 1}, "secret": {"a:b": "v"}}, "config"),
        ({"name": "aws", "kind": "aws_sts", "config": {"role": "a\u0000b"}}, "config"),
        ({"name": "aws", "kind": "aws_sts", "config": {"blob": "x" * 17000}}, "config"),
        ({"name": "aws", "kind": "aws_sts", "config": "role=admin"}, "config"),
        ({"name": "stripe", "kind": "keyward_jwt", "scopes": ["bad scope"]}, "scopes"),
        ({"name": "stripe", "kind": "keyward_jwt", "scopes": ["a:b*"]}, "scopes"),
        ({"name": "stripe", "kind": "keyward_jwt", "scopes": "charges:read"}, "scopes"),
        ({"name": "stripe", "kind": "keyward_jwt", "max_ttl_seconds": 59}, "max_ttl_seconds"),
        ({"name": "stripe", "kind": "keyward_jwt", "max_ttl_seconds": 86401}, "max_ttl_seconds"),
        ({"name": "stripe", "kind": "static"}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {}}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": ["a:b"]}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": "not json"}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {"charges:*": "v"}}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {"has space": "v"}}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {"a:b": ""}}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {"a:b": 12}}, "secret"),
        ({"name": "stripe", "kind": "static", "secret": {f"s{n}": "v" for n in range(101)}}, "secret"),
        ({"name": "gh", "kind": "github_app", "config": GITHUB_CONFIG, "secrets": "ghs_typo"}, "secrets"),
        ({"name": "gh", "kind": "github_app", "config": GITHUB_CONFIG, "secret": ""}, "secret"),
        ({"name": "gh", "kind": "github_app", "config": GITHUB_CONFIG, "secret": {"pem": "x"}}, "secret"),
        ({"name": "gh", "kind": "github_app", "config": GITHUB_CONFIG, "secret": "x" * (64 * 1024 + 1)}, "secret"),
    ],
)
def test_invalid_providers_are_400_with_the_field(callers, body, field):
    response = create(callers, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not Provider.objects.exists()
    assert not AuditEvent.objects.filter(event_type__startswith="provider.").exists()


@pytest.mark.parametrize("field", ["name", "kind", "secret", "secret_version"])
def test_patch_refuses_fixed_and_unknown_fields(callers, field):
    created(callers, name="stripe", kind="keyward_jwt")
    response = callers.client("admin").patch("/v1/secrets/stripe", {field: "changed"}, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Provider.objects.get().kind == "keyward_jwt"


def test_patch_revalidates_the_config_for_the_kind(callers):
    created(callers, name="stripe", kind="keyward_jwt", config={"audience": "payments"})
    admin = callers.client("admin")
    assert admin.patch("/v1/secrets/stripe", {"config": {"audience": ""}}, format="json").status_code == 400
    reset = admin.patch("/v1/secrets/stripe", {"config": {}}, format="json")
    assert reset.status_code == 200
    assert reset.json()["config"] == {"audience": "stripe"}


def test_an_unchanged_patch_records_nothing(callers):
    created(callers, name="stripe", kind="keyward_jwt", description="same")
    response = callers.client("admin").patch("/v1/secrets/stripe", {"description": "same"}, format="json")
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(event_type="provider.updated").exists()


def test_rotation_bumps_the_version_and_keeps_old_versions_sealed(callers):
    first, second = new_secret(), new_secret()
    before = created(callers, name="gh", kind="oauth2_client_credentials", config=OAUTH_CONFIG, secret=first)
    after = callers.client("admin").post("/v1/secrets/gh/rotate", {"secret": second}, format="json").json()

    assert after["secret"]["version"] == before["secret"]["version"] + 1 == 2
    assert after["secret"]["fingerprint"] != before["secret"]["fingerprint"]
    assert after["secret"]["fingerprint"] == hashlib.sha256(second.encode()).hexdigest()[:16]
    rows = {row.version: row for row in ProviderSecret.objects.filter(provider__name="gh")}
    assert set(rows) == {1, 2}
    assert rows[1].unseal_secret() == first.encode()
    assert rows[2].unseal_secret() == second.encode()
    for row in rows.values():
        assert first.encode() not in bytes(row.ciphertext)
        assert second.encode() not in bytes(row.ciphertext)
    event = AuditEvent.objects.get(event_type="provider.secret_rotated")
    assert event.detail == {
        "provider_id": rows[2].provider_id,
        "kind": "oauth2_client_credentials",
        "version": 2,
        "fingerprint": after["secret"]["fingerprint"],
    }


def test_the_plaintext_never_leaves_in_a_response_audit_row_or_log(callers, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.request")
    plain = [new_secret() for _ in range(4)]
    admin = callers.client("admin")
    bodies = [
        create(callers, name="gh", kind="oauth2_client_credentials", config=OAUTH_CONFIG, secret=plain[0]),
        admin.post("/v1/secrets/gh/rotate", {"secret": plain[1]}, format="json"),
        create(callers, name="stripe", kind="static", secret={"charges:read": plain[2]}),
        admin.post("/v1/secrets/stripe/rotate", {"secret": {"charges:read": plain[3]}}, format="json"),
        admin.get("/v1/secrets"),
        admin.get("/v1/secrets/gh"),
        admin.get("/v1/secrets/stripe"),
        admin.get("/v1/audit"),
        # Refusals that carry a secret must not echo it either.
        create(callers, name="jwt", kind="keyward_jwt", secret=plain[0]),
        create(callers, name="bad-static", kind="static", secret={"bad scope": plain[1]}),
        create(callers, name="bad-static2", kind="static", secret={"a:b": plain[2], "c:d": 7}),
        create(callers, name="gh", kind="oauth2_client_credentials", config=OAUTH_CONFIG, secret=plain[3]),
        admin.post("/v1/secrets/gh/rotate", {"secret": {"nested": plain[0]}}, format="json"),
        admin.patch("/v1/secrets/gh", {"secret": plain[1]}, format="json"),
    ]
    assert [response.status_code for response in bodies] == [201, 200, 201, 200] + [200] * 4 + [
        400,
        400,
        400,
        409,
        400,
        400,
    ]
    assert "Bad Request: /v1/secrets" in caplog.text  # the log capture really saw these requests
    audit_text = all_audit_text()
    for value in plain:
        for response in bodies:
            assert value not in response.content.decode()
        assert value not in audit_text
        assert value not in caplog.text
    assert AuditEvent.objects.filter(event_type__startswith="provider.").count() == 4
