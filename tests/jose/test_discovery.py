"""OpenID Connect discovery through the SSRF guard, against a real server on 127.0.0.1."""

import pytest

from keyward.core.exceptions import InvalidRequest
from keyward.jose.jwks import WELL_KNOWN_PATH, discovery_url_for, fetch_discovery

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(local_server):
    server = local_server()
    issuer = server.url("").rstrip("/")
    server.respond(
        WELL_KNOWN_PATH,
        json_body={
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "id_token_signing_alg_values_supported": ["RS256", "ES256", 7],
        },
    )
    return server, issuer


def failure(call, *args, **kwargs) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args, **kwargs)
    return caught.value


def test_discovery_reads_issuer_and_jwks_uri(provider):
    server, issuer = provider
    for given in (issuer, issuer + "/", issuer + WELL_KNOWN_PATH):
        metadata = fetch_discovery(given, expected_issuer=issuer)
        assert metadata.issuer == issuer
        assert metadata.jwks_uri == f"{issuer}/jwks"
        assert metadata.token_endpoint == f"{issuer}/token"
        assert metadata.userinfo_endpoint is None
        assert metadata.signing_algorithms == ("RS256", "ES256")
    assert server.count(WELL_KNOWN_PATH) == 3


def test_discovery_url_for_accepts_an_issuer_or_the_document_url():
    assert discovery_url_for("https://idp.example.com") == "https://idp.example.com" + WELL_KNOWN_PATH
    assert discovery_url_for("https://idp.example.com/tenant/") == "https://idp.example.com/tenant" + WELL_KNOWN_PATH
    url = "https://idp.example.com" + WELL_KNOWN_PATH
    assert discovery_url_for(url) == url


def test_an_issuer_that_differs_from_the_discovery_url_is_refused(provider):
    server, issuer = provider
    server.respond(WELL_KNOWN_PATH, json_body={"issuer": "https://accounts.google.com", "jwks_uri": f"{issuer}/jwks"})
    error = failure(fetch_discovery, issuer, field="discovery_url")
    assert error.code == "oidc_discovery_failed"
    assert list(error.fields) == ["discovery_url"]


def test_an_unexpected_issuer_is_refused(provider):
    _server, issuer = provider
    assert failure(fetch_discovery, issuer, expected_issuer=issuer + "/other").code == "oidc_discovery_failed"


@pytest.mark.parametrize(
    "document",
    [
        {"issuer": "ISSUER"},
        {"jwks_uri": "ISSUER/jwks"},
        {"issuer": "ISSUER", "jwks_uri": 5},
        ["not", "an", "object"],
    ],
)
def test_an_incomplete_document_is_refused(provider, document):
    server, issuer = provider
    if isinstance(document, dict):
        document = {
            name: value.replace("ISSUER", issuer) if isinstance(value, str) else value
            for name, value in document.items()
        }
    server.respond(WELL_KNOWN_PATH, json_body=document)
    assert failure(fetch_discovery, issuer).code == "oidc_discovery_failed"


@pytest.mark.parametrize(
    "jwks_uri", ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://x@127.0.0.1/"]
)
def test_a_jwks_uri_the_guard_refuses_is_refused(provider, jwks_uri):
    server, issuer = provider
    server.respond(WELL_KNOWN_PATH, json_body={"issuer": issuer, "jwks_uri": jwks_uri})
    error = failure(fetch_discovery, issuer, field="idp")
    assert error.code in {"url_destination_not_allowed", "url_scheme_not_allowed", "invalid_url"}
    assert "jwks_uri" in error.fields["idp"][0]


def test_a_refused_token_endpoint_is_refused(provider):
    server, issuer = provider
    server.respond(
        WELL_KNOWN_PATH,
        json_body={"issuer": issuer, "jwks_uri": f"{issuer}/jwks", "token_endpoint": "http://[fd00:ec2::254]/"},
    )
    assert failure(fetch_discovery, issuer).code == "url_destination_not_allowed"


@pytest.mark.parametrize(("status", "body"), [(500, b"{}"), (200, b"<html>"), (404, b"")])
def test_an_unreachable_or_broken_document_is_refused(provider, status, body):
    server, issuer = provider
    server.respond(WELL_KNOWN_PATH, status=status, body=body)
    assert failure(fetch_discovery, issuer).code == "oidc_discovery_failed"


def test_discovery_goes_through_the_ssrf_guard(provider, settings):
    server, issuer = provider
    settings.KEYWARD_ALLOW_PRIVATE_URLS = False
    error = failure(fetch_discovery, issuer)
    assert error.code == "url_destination_not_allowed"
    assert server.count() == 0
