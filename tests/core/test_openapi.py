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
