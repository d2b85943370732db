import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


def test_readyz_reports_an_unreachable_redis(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "down"}}


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz")
    assert response["X-Request-Id"].startswith("req_")


def test_a_well_formed_client_request_id_is_kept(client):
    response = client.get("/auth/me", HTTP_X_REQUEST_ID="trace-1234abcd")
    assert response["X-Request-Id"] == "trace-1234abcd"
    assert response.json()["request_id"] == "trace-1234abcd"


@pytest.mark.parametrize(
    "offered", ["short", "x" * 200, "bad id with spaces", "evil\u2028line", "<script>alert</script>"]
)
def test_a_malformed_client_request_id_is_replaced(client, offered):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=offered)
    assert response["X-Request-Id"].startswith("req_")
    assert response["X-Request-Id"] != offered


def test_unknown_path_is_a_json_404(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not_found"
    assert body["request_id"] == response["X-Request-Id"]


def test_wrong_method_is_a_json_405(client):
    response = client.get("/auth/login")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2", b"null"])
def test_garbage_bodies_are_400_not_500(client, body):
    response = client.post("/auth/login", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_non_json_content_type_is_415(client):
    response = client.post("/auth/login", "email=a&password=b", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@override_settings(ROOT_URLCONF="tests.core.urls_boom", DEBUG=False)
@pytest.mark.parametrize("path", ["/boom", "/boom-api"])
def test_a_crash_is_a_json_500_without_trace_or_secret(path):
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert body["request_id"] == response["X-Request-Id"]
    text = response.content.decode()
    assert "hunter2" not in text
    assert "Traceback" not in text


def test_openapi_schema_lists_the_endpoints(client):
    response = client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for expected in ["/auth/signup", "/auth/login", "/auth/me", "/auth/2fa/setup", "/v1/admins/{email}/role"]:
        assert expected in paths
    assert "sessionToken" in response.json()["components"]["securitySchemes"]
