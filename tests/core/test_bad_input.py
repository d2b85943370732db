"""Crafted input that used to crash an endpoint (500) must be a 4xx in the one error shape."""

import base64
import re

import pytest
from rest_framework.test import APIClient

from tests.factories import make_audit_events, make_policy, make_session_token

pytestmark = pytest.mark.django_db


def client_as(account) -> APIClient:
    """A client that answers 500s instead of raising, so a crash shows up as a status code."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(account)}")
    return client


def cursor(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def assert_invalid_request(response, field: str | None = None) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "invalid_request"
    if field is not None:
        assert field in response.json()["fields"]


# L1: DRF checks a cursor's offset and direction but passed its position to the database unchecked.
@pytest.mark.parametrize("path", ["/v1/audit", "/v1/policies"])
@pytest.mark.parametrize(
    "raw",
    [b"p=abc", b"p=-1", b"p=1.5", b"p=1e3", b"p=%00", b"p=" + b"9" * 20, b"p=9223372036854775808", b"o=1&p= 1"],
)
def test_a_cursor_position_that_is_no_row_number_is_a_400(callers, path, raw):
    make_audit_events(callers.org, 3)
    make_policy(callers.org, provider="stripe")
    response = client_as(callers.owner).get(path, {"cursor": cursor(raw)})
    assert_invalid_request(response, "cursor")


def test_cursors_the_api_hands_out_still_work(callers):
    make_audit_events(callers.org, 5)
    client = client_as(callers.viewer)
    first = client.get("/v1/audit", {"limit": 2}).json()
    second = client.get(first["next"]).json()
    assert [row["seq"] for row in first["results"]] == [5, 4]
    assert [row["seq"] for row in second["results"]] == [3, 2]


# L2: a NUL reaches PostgreSQL as part of a lookup and fails the query.
@pytest.mark.parametrize(
    "path", ["/v1/admins/a%00b", "/v1/admins/a%0Ab", "/v1/admins/a%20b", "/v1/admins/" + "a" * 255]
)
def test_an_admin_lookup_that_cannot_be_an_email_is_a_404(callers, path):
    response = client_as(callers.owner).get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_admin_lookups_by_any_real_email_still_work(callers):
    response = client_as(callers.owner).get(f"/v1/admins/{callers.viewer.email.upper()}")
    assert response.status_code == 200
    assert response.json()["email"] == callers.viewer.email


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["/v1/admins/a%00b", "/v1/admins/a%00b/role"])
def test_a_nul_in_an_admin_lookup_is_no_500_on_postgresql(callers, path):
    owner = client_as(callers.owner)
    response = owner.post(path, {"role": "admin"}, format="json") if path.endswith("role") else owner.get(path)
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/v1/agents/a%00b", "/v1/agents/%C2%B2", "/v1/secrets/a%00b", "/v1/secrets/a%0Ab"])
def test_an_agent_or_provider_lookup_that_cannot_be_a_name_is_a_404(callers, path):
    """ "²" passed `str.isdigit` and then failed `int()`; a NUL failed the query on PostgreSQL."""
    response = client_as(callers.admin).get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["/v1/agents/a%00b", "/v1/secrets/a%00b"])
def test_a_nul_in_an_agent_or_provider_lookup_is_no_500_on_postgresql(callers, path):
    assert client_as(callers.admin).get(path).status_code == 404


@pytest.mark.postgres
@pytest.mark.parametrize("param", ["agent", "event", "end_user"])
def test_a_nul_in_an_audit_filter_is_a_400_on_postgresql(callers, param):
    response = client_as(callers.viewer).get("/v1/audit", {param: "a\x00b"})
    assert_invalid_request(response, param)


# L3: a lone surrogate cannot be encoded as UTF-8; echoed in an error message it crashed the renderer.
@pytest.mark.parametrize(
    "body",
    [
        b'{"role": "\\ud800"}',
        b'{"role": "admin", "\\udfff": 1}',
        b'{"role": ["x", {"y": "a\\ud800b"}]}',
        b'{"role": "\\ude00\\ud83d"}',
    ],
)
def test_a_json_string_with_an_unpaired_surrogate_is_a_400(callers, body):
    response = client_as(callers.owner).post(
        f"/v1/admins/{callers.viewer.email}/role", body, content_type="application/json"
    )
    assert_invalid_request(response)


def test_a_proper_surrogate_pair_is_just_a_character(api):
    response = api.post(
        "/auth/login", b'{"email": "\\ud83d\\ude00@example.com", "password": "x"}', content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000])
def test_json_nested_too_deeply_to_parse_is_a_400(body):
    response = APIClient(raise_request_exception=False).post("/auth/login", body, content_type="application/json")
    assert_invalid_request(response)


def test_options_answers_every_route_without_building_its_objects(callers):
    """DRF's default OPTIONS listed each method's fields by calling get_object(): a 500 on
    /v1/approvals/webhook, a route with no id (found by schemathesis)."""
    client = client_as(callers.owner)
    paths = client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in paths:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = client.options(concrete, {"url": "", "secret": "x"}, format="json")
        assert response.status_code < 500, f"OPTIONS {concrete}: {response.status_code}"
    webhook = client.options("/v1/approvals/webhook")
    assert webhook.status_code == 200
    assert "actions" not in webhook.json()
