"""The OpenAPI schema at /v1/schema documents every API route the URLconf serves."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

NOT_API = {"healthz", "readyz", "v1/schema"}


def _routes(patterns, prefix: str = "") -> list[str]:
    found = []
    for pattern in patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, text)
        elif isinstance(pattern, URLPattern):
            found.append(text)
    return found


def _as_openapi_path(route: str) -> str:
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return "/" + route.replace("\\.", ".").replace("{pk}", "{id}")  # spectacular names pk by the field


def test_every_api_route_is_in_the_schema(client):
    schema = client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    documented = set(schema["paths"])
    served = {_as_openapi_path(route) for route in _routes(get_resolver().url_patterns)}
    served = {path for path in served if path.lstrip("/") not in NOT_API and "{format}" not in path}
    missing = sorted(served - documented)
    assert served, "no routes found"
    assert not missing, f"routes missing from /v1/schema: {missing}"


# --- Error answers, headers and bounds (issue 10, finding 8: the schema described only successes) ---

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def openapi(client) -> dict:
    return client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def operations(openapi: dict):
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def error_schema(response: dict) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_the_error_body_is_one_named_component(openapi):
    error = openapi["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "message", "request_id", "fields"}
    assert set(error["required"]) == {"error", "message", "request_id"}


def test_every_operation_can_answer_503_with_retry_after(openapi):
    for label, operation in operations(openapi):
        unavailable = operation["responses"].get("503")
        assert unavailable is not None, label
        assert error_schema(unavailable) == ERROR_REF, label
        assert "Retry-After" in unavailable["headers"], label
        assert "database_unavailable" in unavailable["description"], label


def test_error_answers_follow_from_how_each_operation_is_built(openapi):
    for label, operation in operations(openapi):
        responses = operation["responses"]
        errors = {status for status in responses if status >= "400"}
        assert all(error_schema(responses[status]) == ERROR_REF for status in errors), label
        takes_input = "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))
        if takes_input:
            assert "400" in responses, label
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, label
        if {"sessionToken": []} in operation.get("security", []):
            assert "WWW-Authenticate" in responses["401"]["headers"], label
            assert "not_authenticated" in responses["401"]["description"], label
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"] is True, label


def test_role_gated_and_org_routes_declare_403_and_open_routes_do_not(openapi):
    paths = openapi["paths"]
    assert "no_org" in paths["/v1/agents"]["get"]["responses"]["403"]["description"]
    assert "forbidden" in paths["/v1/org"]["patch"]["responses"]["403"]["description"]
    assert "403" not in paths["/auth/me"]["get"]["responses"]  # any signed-in account may read itself
    assert "401" not in paths["/v1/jwks"]["get"]["responses"]
    assert set(paths["/v1/jwks"]["get"]["responses"]) == {"200", "503"}


def test_throttled_routes_declare_429(openapi):
    paths = openapi["paths"]
    assert "429" in paths["/auth/signup"]["post"]["responses"]  # a DRF throttle
    assert "429" in paths["/v1/idps"]["post"]["responses"]  # throttled per action
    assert "429" not in paths["/v1/idps"]["get"]["responses"]
    assert "rate_limited" in paths["/auth/login"]["post"]["responses"]["429"]["description"]  # the service's own
    assert "rate_limited" in paths["/v1/introspect"]["post"]["responses"]["429"]["description"]


def test_extra_codes_of_a_view_are_added_to_the_derived_ones(openapi):
    paths = openapi["paths"]
    assert "provider_exists" in paths["/v1/secrets"]["post"]["responses"]["409"]["description"]
    destroy = paths["/v1/idps/{id}"]["delete"]["responses"]
    assert set(destroy) >= {"204", "401", "403", "404", "409", "503"}  # the default 204 stays
    enable = paths["/auth/2fa/enable"]["post"]["responses"]["400"]["description"]
    assert "invalid_request" in enable
    assert "invalid_totp_code" in enable


def test_the_broker_declares_its_headers_bodies_and_answers(openapi):
    from broker import parsing
    from keyward.jose.verify import MAX_TOKEN_BYTES

    operation = openapi["paths"]["/v1/credentials"]["post"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert headers["X-Keyward-Agent"]["required"] is True
    assert headers["X-Keyward-Agent"]["schema"]["pattern"] == parsing.AGENT_HEADER_PATTERN
    assert headers["X-Keyward-Environment"]["schema"]["pattern"] == parsing.ENVIRONMENT_PATTERN
    assert headers["Idempotency-Key"]["schema"]["pattern"] == parsing.IDEMPOTENCY_KEY_PATTERN
    assert headers["X-Keyward-Agent-Assertion"]["schema"]["maxLength"] == MAX_TOKEN_BYTES
    # The end-user token or a delegation token, never both: two alternative security requirements.
    assert operation["security"] == [{"endUserToken": []}, {"delegationToken": []}]
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["delegationToken"] == {**schemes["delegationToken"], "in": "header", "name": "X-Keyward-Delegation"}
    responses = operation["responses"]
    assert set(responses) == {"200", "202", "400", "401", "403", "404", "409", "429", "502", "503"}
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/IssuedAnswer")
    assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/PendingApprovalAnswer")
    assert "too_many_outstanding" in responses["429"]["description"]
    body = openapi["components"]["schemas"]["CredentialRequest"]
    assert body["additionalProperties"] is False
    assert body["properties"]["provider"]["pattern"]
    assert body["properties"]["scope"]["pattern"]


def test_input_bounds_are_in_the_schema(openapi):
    schemas = openapi["components"]["schemas"]
    registration = schemas["AgentRegistration"]
    assert registration["additionalProperties"] is False
    assert registration["properties"]["name"]["maxLength"] == 100
    assert registration["properties"]["name"]["pattern"]
    assert registration["properties"]["max_ttl_seconds"]["minimum"] == 60
    assert registration["properties"]["max_ttl_seconds"]["maximum"] == 86400
    assert schemas["PatchedOrgSettingsChange"]["minProperties"] == 1
    audit = {p["name"]: p["schema"] for p in openapi["paths"]["/v1/audit"]["get"]["parameters"]}
    assert (audit["limit"]["minimum"], audit["limit"]["maximum"]) == (1, 500)
    assert audit["agent"]["minLength"] == 1  # `?agent=` is refused, not ignored
    assert audit["outcome"]["enum"]
