"""Unknown fields are refused everywhere, one way (keyward.core.validation.StrictSerializer).

Walked from the OpenAPI schema, so a new route, body or query serializer cannot be missed: every
operation that takes a JSON body refuses an unknown key with 400 `invalid_request` naming it, and
every serializer an operation takes input with is strict, nested ones included.
"""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers
from rest_framework.test import APIClient

from broker import registry
from keyward.agents.services import register_agent
from keyward.core.openapi import loose_serializers
from keyward.core.validation import StrictSerializer
from keyward.idp.services import create_connector
from keyward.providers.services import create_provider
from tests.factories import make_session_token

pytestmark = pytest.mark.django_db

UNKNOWN = "zz_not_a_field"


def schema(client) -> dict:
    return client.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def operations_with_a_body(client):
    for path, methods in schema(client)["paths"].items():
        for method, operation in methods.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                yield path, method, operation


@pytest.fixture
def world(callers):
    """An object behind every path parameter, so detail routes reach their input check."""
    provider = create_provider(org=callers.org, name="stripe", kind="keyward_jwt", scopes=["charges:read"])
    idp = create_connector(
        org=callers.org,
        name="corp",
        issuer="https://idp.example.com",
        audience="keyward",
        jwks_uri="http://127.0.0.1:9/jwks",
        allowed_algorithms=["RS256"],
    )
    register_agent(org=callers.org, name="invoice-bot")
    values = {
        "email": callers.admin.email,
        "agent": "invoice-bot",
        "name": provider.name,
        "jti": "0",
        "/v1/idps/{id}": str(idp.pk),
        "/v1/approvals/{id}": "apr_0",
    }
    return callers, values


def fill(path: str, values: dict) -> str:
    for name, value in values.items():
        if name.startswith("/"):
            path = path.replace(name, name.replace("{id}", value)) if path.startswith(name) else path
        else:
            path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {path}"
    return path


def client_for(operation: dict, callers) -> APIClient:
    client = APIClient()
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    if "sessionToken" in schemes:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(callers.owner)}")
    elif "introspectionKey" in schemes:
        key = registry.create_introspection_key(callers.org, name="test").key
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    elif "endUserToken" in schemes:
        client.credentials(HTTP_X_KEYWARD_AGENT="invoice-bot")  # the body is checked before the token
    return client


def test_every_operation_that_takes_a_body_refuses_an_unknown_field(world, client):
    callers, values = world
    checked = []
    for path, method, operation in operations_with_a_body(client):
        response = getattr(client_for(operation, callers), method)(fill(path, values), {UNKNOWN: 1}, format="json")
        label = f"{method.upper()} {path}"
        assert response.status_code == 400, f"{label}: {response.status_code} {response.content[:300]!r}"
        assert response.json()["error"] == "invalid_request", label
        assert UNKNOWN in response.json()["fields"], f"{label}: {response.json()}"
        checked.append(label)
    assert "POST /v1/policies" in checked
    assert "POST /v1/credentials" in checked
    assert len(checked) > 20


def test_every_input_serializer_in_the_schema_is_strict():
    """Request bodies and query-parameter serializers, walked through the schema generator itself."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    inputs = []
    for path, _, method, view in generator._get_paths_and_endpoints():
        view.schema.method, view.schema.path = method.upper(), path
        if method in ("POST", "PUT", "PATCH"):
            inputs.append((path, view.schema.get_request_serializer()))
        inputs += [(path, parameter) for parameter in view.schema.get_override_parameters()]
    loose = {f"{path}: {name}" for path, declared in inputs for name in loose_serializers(declared)}
    assert len(inputs) > 30
    assert not loose


class Inner(serializers.Serializer):
    value = serializers.CharField()


class Outer(StrictSerializer):
    items = serializers.ListField(child=Inner())


def test_a_loose_serializer_is_found_even_nested():
    assert loose_serializers(Outer) == ["Inner"]
    assert loose_serializers(Inner) == ["Inner"]
    assert loose_serializers(None) == []


@pytest.mark.parametrize(
    "path",
    ["/v1/issued?status=", "/v1/agents?status=", "/v1/approvals?status=", "/v1/audit?outcome=", "/v1/policies?effect="],
)
def test_an_empty_enum_query_value_is_refused(callers, path):
    """`?status=` used to mean "no filter" (schemathesis: an invalid request accepted with 200)."""
    client = callers.client("owner")
    response = client.get(path)
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == [path.split("?")[1].removesuffix("=")]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/issued?colour=red", "colour"),
        ("/v1/audit?limit=5&limits=5", "limits"),
        ("/v1/agents?status=active&status=revoked", "status"),
        ("/v1/audit?limit=5.0", "limit"),
        ("/v1/audit?limit=%205", "limit"),
        ("/v1/policies?agent=", "agent"),
    ],
)
def test_query_parameters_are_known_given_once_and_exact(callers, path, field):
    response = callers.client("owner").get(path)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        ({"name": "bot", "max_ttl_seconds": "600"}, "max_ttl_seconds"),
        ({"name": "bot", "max_ttl_seconds": 600.0}, "max_ttl_seconds"),
        ({"name": "bot", "attestation_required": "true"}, "attestation_required"),
        ({"name": "bot", "grants": [{"provider": "stripe", "scopes": [5], "environments": ["*"]}]}, "grants"),
        ({"name": " bot"}, "name"),
        ({"name": "bot\n"}, "name"),
        ({"name": "bot", "id": 7}, "id"),
    ],
)
def test_json_values_have_their_field_s_type_and_are_taken_as_sent(callers, body, field):
    """DRF alone would take 5 for "5", "600" for 600, and trim " bot"; the schema allows none of that."""
    response = callers.client("admin").post("/v1/agents", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_the_policy_api_refuses_unknown_fields(callers):
    """Issue 10, finding 7: POST /v1/policies silently ignored unknown fields."""
    response = callers.client("admin").post("/v1/policies", {"effect": "deny", "scopes": "charges:*"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"scopes": ["Unknown field."]}


def test_a_flood_of_unknown_keys_gets_a_bounded_answer(callers):
    body = {f"junk{n}-" + "x" * 500: n for n in range(1000)}
    response = callers.client("owner").patch("/v1/org", body, format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert len(fields) == 20
    assert all(len(name) <= 100 for name in fields)
