import pytest

from keyward.audit.models import AuditEvent
from keyward.idp.dev import ensure_dev_idp
from keyward.idp.models import IdpConnector, IdpEmailDomain, IdpIssuer
from keyward.net import outbound
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


def test_create_matrix_shape_and_audit(callers, fake_idp, other_idp):
    def body(who: str) -> dict:
        idp = other_idp if who == "other_org" else fake_idp  # an issuer belongs to one org
        return connector_body(idp, audience=f"aud-{who}", name=f"okta-{who}", email_domains=[])

    responses = assert_permission_matrix(
        callers,
        "POST",
        "/v1/idps",
        {"anonymous": 401, "other_org": 201, "viewer": 403, "admin": 201, "owner": 201},
        data=body,
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
    [claim] = listed["admin"].json()[0]["email_domains"]
    assert claim["domain"] == "example.com"
    assert claim["verified"] is False
    assert claim["verification_record"].startswith("keyward-verification=")
    assert_permission_matrix(callers, "GET", path, ADMIN_ONLY)
    patched = assert_permission_matrix(callers, "PATCH", path, ADMIN_ONLY, data={"name": "okta-prod"})
    assert patched["owner"].json()["name"] == "okta-prod"
    assert_permission_matrix(callers, "DELETE", path, {**ADMIN_ONLY, "admin": 204, "owner": 404})
    assert not IdpConnector.objects.exists()
    assert AuditEvent.objects.filter(org=callers.org, event_type="idp.deleted").count() == 1
    assert AuditEvent.objects.filter(org=callers.org, event_type="idp.updated").count() == 2


def test_issuer_and_audience_are_unique_within_an_org(callers, fake_idp):
    make_connector(callers, fake_idp)
    response = callers.client("admin").post(
        "/v1/idps", connector_body(fake_idp, name="again", email_domains=[]), format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "idp_conflict"


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
    assert response.json()["error"] == "oidc_discovery_failed"
    assert "discovery_url" in response.json()["fields"]
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


def test_deleting_a_connector_frees_its_domains_and_its_issuer(callers, fake_idp):
    connector = make_connector(callers, fake_idp)
    callers.client("admin").delete(f"/v1/idps/{connector['id']}")
    assert not IdpEmailDomain.objects.exists()
    assert not IdpIssuer.objects.exists()
    other = make_org()
    assert other.idp_connectors.count() == 0


def test_a_dripping_discovery_document_cannot_hold_an_admin_request(callers, drip_server, monkeypatch):
    """OIDC discovery runs on the request-path budget: the server is cut off, the admin gets a 400."""
    monkeypatch.setattr(outbound, "REQUEST_PATH_TOTAL_TIMEOUT", 1.0, raising=False)
    server = drip_server(body_bytes=40, interval=0.2)
    body = {
        "name": "slow",
        "issuer": server.url("").rstrip("/"),
        "audience": "a",
        "allowed_algorithms": ["RS256"],
        "discovery_url": server.url("/.well-known/openid-configuration"),
    }

    response = callers.client("admin").post("/v1/idps", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "oidc_discovery_failed"
    assert server.wait_until_done()
    assert not server.sent_everything
    assert not IdpConnector.objects.exists()
