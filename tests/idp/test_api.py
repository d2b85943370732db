import pytest

from keyward.audit.models import AuditEvent
from keyward.idp.dev import ensure_dev_idp
from keyward.idp.models import IdpConnector, IdpEmailDomain
from tests.factories import make_org
from tests.permissions import assert_permission_matrix

pytestmark = pytest.mark.django_db

ADMIN_ONLY = {"anonymous": 401, "other_org": 404, "viewer": 403, "admin": 200, "owner": 200}


def connector_body(fake_idp, **overrides) -> dict:
    return {
        "name": "okta",
        "issuer": fake_idp.url,
        "audience": "keyward-broker",
        "jwks_uri": fake_idp.jwks_uri,
        "allowed_algorithms": ["RS256"],
        "email_domains": ["Example.COM"],
        **overrides,
    }


def make_connector(callers, fake_idp, **overrides) -> dict:
    response = callers.client("admin").post("/v1/idps", connector_body(fake_idp, **overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_matrix_shape_and_audit(callers, fake_idp):
    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/idps",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 201},
        data=lambda who: connector_body(fake_idp, audience=f"aud-{who}", name=f"okta-{who}", email_domains=[]),
    )
    body = responses["admin"].json()
    assert body["kind"] == "oidc"
    assert body["allowed_algorithms"] == ["RS256"]
    assert body["jwks_uri"] == fake_idp.jwks_uri
    created = IdpConnector.objects.get(pk=body["id"])
    assert created.org == callers.org
    event = AuditEvent.objects.get(event_type="idp.created", org=callers.org, detail__name="okta-admin")
    assert event.actor_id == str(callers.admin.pk)


def test_list_retrieve_patch_delete_matrix(callers, fake_idp):
    connector = make_connector(callers, fake_idp)
    path = f"/v1/idps/{connector['id']}"

    listed = assert_permission_matrix(callers, "GET", "/v1/idps", {**ADMIN_ONLY, "other_org": 200})
    assert [row["id"] for row in listed["admin"].json()] == [connector["id"]]
    assert listed["other_org"].json() == []
    assert listed["admin"].json()[0]["email_domains"] == ["example.com"]
    assert_permission_matrix(callers, "GET", path, ADMIN_ONLY)
    patched = assert_permission_matrix(callers, "PATCH", path, ADMIN_ONLY, data={"name": "okta-prod"})
    assert patched["owner"].json()["name"] == "okta-prod"
    assert_permission_matrix(callers, "DELETE", path, {**ADMIN_ONLY, "admin": 204, "owner": 404})
    assert not IdpConnector.objects.exists()
    assert AuditEvent.objects.filter(org=callers.org, event_type="idp.deleted").count() == 1
    assert AuditEvent.objects.filter(org=callers.org, event_type="idp.updated").count() == 2


def test_issuer_and_audience_are_unique_across_orgs_without_naming_the_other_org(callers, fake_idp):
    make_connector(callers, fake_idp)
    response = callers.client("other_org").post("/v1/idps", connector_body(fake_idp, email_domains=[]), format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "idp_conflict"
    assert callers.org.name not in response.content.decode()
    assert callers.org.slug not in response.content.decode()


def test_an_email_domain_routes_to_one_org_only(callers, fake_idp):
    make_connector(callers, fake_idp)
    response = callers.client("other_org").post(
        "/v1/idps", connector_body(fake_idp, audience="other", email_domains=["example.com"]), format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "email_domain_taken"
    assert IdpConnector.objects.count() == 1


def test_discovery_fills_the_jwks_uri(callers, fake_idp):
    body = connector_body(fake_idp, discovery_url=fake_idp.discovery_url)
    del body["jwks_uri"]
    created = callers.client("admin").post("/v1/idps", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["jwks_uri"] == fake_idp.jwks_uri


def test_discovery_for_another_issuer_is_refused(callers, fake_idp):
    body = connector_body(fake_idp, discovery_url=fake_idp.discovery_url, issuer="https://someone-else.example")
    del body["jwks_uri"]
    response = callers.client("admin").post("/v1/idps", body, format="json")
    assert response.status_code == 400
    assert not IdpConnector.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"jwks_uri": ""}, "jwks_uri"),
        ({"allowed_algorithms": ["HS256"]}, "allowed_algorithms"),
        ({"allowed_algorithms": ["none"]}, "allowed_algorithms"),
        ({"allowed_algorithms": []}, "allowed_algorithms"),
        ({"email_domains": ["not a domain"]}, "email_domains"),
        ({"issuer": ""}, "issuer"),
        ({"jwks_uri": "file:///etc/passwd"}, "jwks_uri"),
    ],
)
def test_bad_connectors_are_400_with_the_field(callers, fake_idp, overrides, field):
    response = callers.client("admin").post("/v1/idps", connector_body(fake_idp, **overrides), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/jwks", "https://127.0.0.1/jwks", "http://idp.example.com/jwks", "https://10.0.0.8/"],
)
def test_outside_dev_mode_private_and_plain_http_jwks_uris_are_refused(callers, fake_idp, settings, url):
    settings.DEV_MODE = False
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    response = callers.client("admin").post("/v1/idps", connector_body(fake_idp, jwks_uri=url), format="json")
    assert response.status_code == 400
    assert "jwks_uri" in response.json()["fields"]


def test_the_dev_idp_is_read_only(callers):
    connector = ensure_dev_idp(callers.org)
    client = callers.client("admin")
    assert client.patch(f"/v1/idps/{connector.pk}", {"name": "x"}, format="json").status_code == 409
    assert client.delete(f"/v1/idps/{connector.pk}").json()["error"] == "dev_idp_read_only"


def test_tenant_routing_by_email_domain(callers, fake_idp, api):
    make_connector(callers, fake_idp)

    found = api.get("/auth/tenant", {"email": "bob@EXAMPLE.com"})
    missing = api.get("/auth/tenant", {"email": "bob@elsewhere.com"})
    bad = api.get("/auth/tenant", {"email": "nobody"})

    assert found.status_code == 200
    assert found.json()["org"]["slug"] == callers.org.slug
    assert found.json()["idp"]["issuer"] == fake_idp.url
    assert "jwks_uri" not in found.json()["idp"]
    assert missing.status_code == 404
    assert missing.json()["error"] == "no_tenant"
    assert bad.status_code == 400


def test_deleting_a_connector_frees_its_domains(callers, fake_idp):
    connector = make_connector(callers, fake_idp)
    callers.client("admin").delete(f"/v1/idps/{connector['id']}")
    assert not IdpEmailDomain.objects.exists()
    other = make_org()
    assert other.idp_connectors.count() == 0
