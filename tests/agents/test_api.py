import pytest

from keyward.agents.models import Agent, AgentStatus
from keyward.audit.models import AuditEvent
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN_ONLY = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}
JWKS_URI = "https://attest.example.com/.well-known/jwks.json"


def agent_body(name: str = "invoice-bot", **overrides) -> dict:
    return {
        "name": name,
        "description": "Reads invoices",
        "max_ttl_seconds": 900,
        "grants": [{"provider": "stripe", "scopes": ["charges:read", "charges:*"], "environments": ["prod"]}],
        **overrides,
    }


def attested(**overrides) -> dict:
    return {
        "attestation_required": True,
        "attestation_issuer": "https://token.actions.githubusercontent.com",
        "attestation_jwks_uri": JWKS_URI,
        "attestation_audience": "keyward",
        **overrides,
    }


def register(callers, who: str = "admin", **body):
    return callers.client(who).post("/v1/agents", agent_body(**body), format="json")


def registered(callers, **body) -> dict:
    response = register(callers, **body)
    assert response.status_code == 201, response.content
    return response.json()


def agent_events(org, event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org=org, event_type=event_type).order_by("seq"))


def test_register_matrix_new_then_existing(callers):
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/agents",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 200},
        data=agent_body(),
    )
    first, second = responses["admin"].json(), responses["owner"].json()
    assert first["id"] == second["id"]
    assert Agent.objects.filter(org=callers.org).count() == 1
    other = Agent.objects.exclude(org=callers.org).get()
    assert other.name == "invoice-bot"
    assert other.id != first["id"]


def test_registration_shape_and_defaults(callers):
    body = registered(callers, grants=[], description="")
    assert body["name"] == "invoice-bot"
    assert body["status"] == "active"
    assert body["max_ttl_seconds"] == 900
    assert body["attestation_required"] is False
    assert body["attestation_algorithms"] == ["RS256", "ES256"]
    assert body["revoked_at"] is None
    minimal = callers.client("admin").post("/v1/agents", {"name": "bare"}, format="json")
    assert minimal.status_code == 201
    assert minimal.json()["max_ttl_seconds"] == 3600
    assert minimal.json()["grants"] == []


def test_registration_is_idempotent_and_updates_the_posted_fields(callers):
    first = registered(callers)
    grants = [{"provider": "github", "scopes": ["repo:read"], "environments": ["staging", "prod"]}]
    again = register(callers, "owner", description="Now also GitHub", grants=grants)
    assert again.status_code == 200
    body = again.json()
    assert body["id"] == first["id"]
    assert body["description"] == "Now also GitHub"
    assert body["grants"] == grants
    assert body["max_ttl_seconds"] == 900

    registered_rows = agent_events(callers.org, "agent.registered")
    updated_rows = agent_events(callers.org, "agent.updated")
    assert len(registered_rows) == 1
    assert registered_rows[0].agent == "invoice-bot"
    assert registered_rows[0].actor_id == str(callers.admin.pk)
    assert len(updated_rows) == 1
    assert updated_rows[0].detail["changed"] == ["description", "grants"]
    assert updated_rows[0].actor_id == str(callers.owner.pk)
    assert updated_rows[0].detail["agent_id"] == first["id"]


def test_fields_left_out_keep_their_values(callers):
    registered(callers, **attested())
    response = callers.client("admin").post(
        "/v1/agents", {"name": "invoice-bot", "max_ttl_seconds": 120}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["max_ttl_seconds"] == 120
    assert body["attestation_required"] is True
    assert body["attestation_jwks_uri"] == JWKS_URI
    assert body["grants"][0]["provider"] == "stripe"


def test_re_registering_the_same_body_changes_and_records_nothing(callers):
    first = registered(callers)
    again = register(callers)
    assert again.status_code == 200
    assert again.json() == first
    assert agent_events(callers.org, "agent.updated") == []


def test_re_registering_does_not_restore_a_revoked_agent(callers):
    agent = registered(callers)
    callers.client("admin").post(f"/v1/agents/{agent['id']}/revoke")
    again = register(callers, description="changed")
    assert again.status_code == 200
    assert again.json()["status"] == "revoked"


def test_grants_are_stored_normalised(callers):
    grants = [{"provider": "stripe", "environments": ["prod", "prod"], "scopes": ["a:b", "a:b", "*"]}]
    body = registered(callers, grants=grants)
    assert body["grants"] == [{"provider": "stripe", "scopes": ["a:b", "*"], "environments": ["prod"]}]


def test_list_matrix_and_status_filter(callers):
    active = registered(callers, name="active-bot")
    revoked = registered(callers, name="revoked-bot")
    callers.client("admin").post(f"/v1/agents/{revoked['id']}/revoke")

    listed = assert_permission_matrix(callers, "GET", "/v1/agents", {**ADMIN_ONLY, "other_org": 200})
    assert [row["name"] for row in listed["admin"].json()] == ["active-bot", "revoked-bot"]
    assert listed["other_org"].json() == []
    admin = callers.client("admin")
    assert [row["id"] for row in admin.get("/v1/agents?status=active").json()] == [active["id"]]
    assert [row["id"] for row in admin.get("/v1/agents?status=revoked").json()] == [revoked["id"]]
    bad = admin.get("/v1/agents?status=deleted")
    assert bad.status_code == 400
    assert "status" in bad.json()["fields"]


def test_retrieve_by_id_or_name_matrix(callers):
    agent = registered(callers, name="bot-7")
    by_id = assert_permission_matrix(callers, "GET", f"/v1/agents/{agent['id']}", ADMIN_ONLY)
    by_name = assert_permission_matrix(callers, "GET", "/v1/agents/bot-7", ADMIN_ONLY)
    assert by_id["admin"].json() == by_name["admin"].json() == agent
    assert callers.client("admin").get("/v1/agents/no-such-bot").status_code == 404
    assert callers.client("admin").get("/v1/agents/999999").status_code == 404


def test_names_with_dots_resolve(callers):
    registered(callers, name="billing.invoice-bot")
    assert callers.client("admin").get("/v1/agents/billing.invoice-bot").status_code == 200


def test_another_orgs_agent_is_404_by_id_and_by_name(callers):
    theirs = callers.client("other_org").post("/v1/agents", agent_body(name="their-bot"), format="json").json()
    admin = callers.client("admin")
    for path in (f"/v1/agents/{theirs['id']}", "/v1/agents/their-bot"):
        assert admin.get(path).status_code == 404
        assert admin.post(f"{path}/revoke").status_code == 404
        assert admin.post(f"{path}/restore").status_code == 404
    assert Agent.objects.get(pk=theirs["id"]).status == AgentStatus.ACTIVE


def test_revoke_and_restore_matrix_idempotent_and_audited(callers):
    agent = registered(callers)
    revoked = assert_permission_matrix(callers, "POST", f"/v1/agents/{agent['id']}/revoke", ADMIN_ONLY)
    assert revoked["admin"].json()["status"] == "revoked"
    assert revoked["admin"].json()["revoked_at"] is not None
    assert revoked["owner"].json()["revoked_at"] == revoked["admin"].json()["revoked_at"]
    stored = Agent.objects.get(pk=agent["id"])
    assert stored.status == AgentStatus.REVOKED
    assert stored.revoked_at is not None
    assert len(agent_events(callers.org, "agent.revoked")) == 1

    restored = assert_permission_matrix(callers, "POST", "/v1/agents/invoice-bot/restore", ADMIN_ONLY)
    assert restored["owner"].json()["status"] == "active"
    assert restored["owner"].json()["revoked_at"] is None
    events = agent_events(callers.org, "agent.restored")
    assert len(events) == 1
    assert events[0].agent == "invoice-bot"
    assert events[0].actor_id == str(callers.admin.pk)
    assert Agent.objects.get(pk=agent["id"]).is_active


def test_attestation_settings_are_stored(callers):
    claims = {"repository": "acme/invoices", "run_attempt": 1, "ref_protected": True}
    body = registered(
        callers,
        **attested(
            attestation_algorithms=["ES256"],
            attestation_subject_pattern="repo:acme/invoices:ref:refs/heads/*",
            attestation_required_claims=claims,
        ),
    )
    assert body["attestation_required"] is True
    assert body["attestation_algorithms"] == ["ES256"]
    assert body["attestation_subject_pattern"] == "repo:acme/invoices:ref:refs/heads/*"
    assert body["attestation_required_claims"] == claims


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Invoice-Bot"}, "name"),
        ({"name": "-bot"}, "name"),
        ({"name": "bot/1"}, "name"),
        ({"name": "b" * 101}, "name"),
        ({"name": "12345"}, "name"),
        ({"max_ttl_seconds": 59}, "max_ttl_seconds"),
        ({"max_ttl_seconds": 86401}, "max_ttl_seconds"),
        ({"max_ttl_seconds": "soon"}, "max_ttl_seconds"),
        ({"grants": {"provider": "stripe"}}, "grants"),
        ({"grants": ["stripe"]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["prod"]}] * 101}, "grants"),
        ({"grants": [{"provider": "Stripe!", "scopes": ["a"], "environments": ["prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": [], "environments": ["prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"] * 51, "environments": ["prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["charges:re*"], "environments": ["prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["has space"], "environments": ["prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": []}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["e"] * 21}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["Prod"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["p" * 65]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["pr*d"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"]}]}, "grants"),
        ({"grants": [{"provider": "stripe", "scopes": ["a"], "environments": ["prod"], "extra": 1}]}, "grants"),
        ({"attestation_algorithms": ["HS256"]}, "attestation_algorithms"),
        ({"attestation_algorithms": ["none"]}, "attestation_algorithms"),
        ({"attestation_algorithms": []}, "attestation_algorithms"),
        ({"attestation_subject_pattern": "x" * 501}, "attestation_subject_pattern"),
        ({"attestation_subject_pattern": "repo:\nacme"}, "attestation_subject_pattern"),
        ({"attestation_required_claims": ["repository"]}, "attestation_required_claims"),
        ({"attestation_required_claims": {"groups": ["admins"]}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"org": {"id": 1}}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"org": None}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"sub": "repo:acme"}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"aud": "keyward"}}, "attestation_required_claims"),
        ({"attestation_required_claims": {f"c{n}": n for n in range(21)}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"c": "v" * 501}}, "attestation_required_claims"),
        ({"attestation_required_claims": {"": "v"}}, "attestation_required_claims"),
        ({"attestation_jwks_uri": "file:///etc/passwd"}, "attestation_jwks_uri"),
        ({"attestation_jwks_uri": "https://169.254.169.254/latest/meta-data"}, "attestation_jwks_uri"),
        (attested(attestation_issuer=""), "attestation_issuer"),
        (attested(attestation_jwks_uri=""), "attestation_jwks_uri"),
        (attested(attestation_audience=""), "attestation_audience"),
        ({"attestation_required": True}, "attestation_audience"),
        ({"status": "revoked"}, "status"),
        ({"max_ttl": 60}, "max_ttl"),
    ],
)
def test_invalid_registrations_are_400_with_the_field(callers, overrides, field):
    response = register(callers, **overrides)
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["fields"], body
    assert set(body) == {"error", "message", "request_id", "fields"}
    assert not Agent.objects.exists()
    assert not AuditEvent.objects.filter(event_type__startswith="agent.").exists()


def test_the_ttl_ceiling_follows_the_setting(callers, settings):
    settings.KEYWARD_MAX_CREDENTIAL_TTL = 600
    assert register(callers, max_ttl_seconds=601).status_code == 400
    assert register(callers, max_ttl_seconds=600).status_code == 201
    assert callers.client("admin").post("/v1/agents", {"name": "bare"}, format="json").json()["max_ttl_seconds"] == 600


def test_an_update_is_checked_against_the_merged_agent(callers):
    registered(callers, **attested())
    response = callers.client("admin").post(
        "/v1/agents", {"name": "invoice-bot", "attestation_audience": ""}, format="json"
    )
    assert response.status_code == 400
    assert "attestation_audience" in response.json()["fields"]
    assert Agent.objects.get().attestation_audience == "keyward"
    assert agent_events(callers.org, "agent.updated") == []


def test_turning_attestation_off_keeps_the_settings_for_later(callers):
    registered(callers, **attested())
    response = callers.client("admin").post(
        "/v1/agents", {"name": "invoice-bot", "attestation_required": False}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["attestation_jwks_uri"] == JWKS_URI
    assert agent_events(callers.org, "agent.updated")[0].detail["changed"] == ["attestation_required"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/jwks", "url_destination_not_allowed"),
        ("https://10.1.2.3/jwks", "url_destination_not_allowed"),
        ("https://[::1]/jwks", "url_destination_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "url_destination_not_allowed"),
        ("https://localhost/jwks", "url_destination_not_allowed"),
        ("https://2130706433/jwks", "invalid_url"),
        ("http://93.184.216.34/jwks", "url_scheme_not_allowed"),
        ("https://user:pass@93.184.216.34/jwks", "invalid_url"),
    ],
)
def test_an_attestation_jwks_uri_outside_dev_mode_passes_the_ssrf_guard(callers, settings, url, code):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    response = register(callers, **attested(attestation_jwks_uri=url))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == code
    assert "attestation_jwks_uri" in response.json()["fields"]
    assert not Agent.objects.exists()


def test_an_ssrf_refusal_also_guards_updates(callers, settings):
    registered(callers, **attested())
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    response = callers.client("admin").post(
        "/v1/agents", {"name": "invoice-bot", "attestation_jwks_uri": "https://192.168.0.10/jwks"}, format="json"
    )
    assert response.status_code == 400
    assert Agent.objects.get().attestation_jwks_uri == JWKS_URI


def test_a_public_attestation_jwks_uri_is_accepted_outside_dev_mode(callers, settings):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    response = register(callers, **attested(attestation_jwks_uri="https://93.184.216.34/jwks"))
    assert response.status_code == 201, response.content


def test_the_schema_documents_the_agent_routes(client):
    schema = client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"/v1/agents", "/v1/agents/{agent}", "/v1/agents/{agent}/revoke", "/v1/agents/{agent}/restore"} <= set(
        schema["paths"]
    )
    parameter = schema["paths"]["/v1/agents/{agent}"]["get"]["parameters"][0]
    assert parameter["schema"]["type"] == "string"
