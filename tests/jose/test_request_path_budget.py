"""JWKS and discovery fetches hold a web request open, so they run on the short request-path budget."""

import pytest

from keyward.core.exceptions import InvalidRequest
from keyward.jose.errors import TokenFailure, TokenInvalid
from keyward.jose.jwks import JwksKeySource, fetch_discovery
from keyward.net import outbound

pytestmark = pytest.mark.django_db


@pytest.fixture
def short_request_budget(monkeypatch):
    """A 1 s request-path budget, while background callers keep their long one."""
    monkeypatch.setattr(outbound, "REQUEST_PATH_TOTAL_TIMEOUT", 1.0, raising=False)


@pytest.mark.usefixtures("short_request_budget")
def test_a_dripping_jwks_is_cut_off_at_the_request_path_budget(drip_server):
    server = drip_server(body_bytes=40, interval=0.2)

    with pytest.raises(TokenInvalid) as caught:
        JwksKeySource(server.url("/jwks")).key_for("k1")

    assert caught.value.reason == TokenFailure.JWKS_UNAVAILABLE
    assert server.wait_until_done()
    assert not server.sent_everything


@pytest.mark.usefixtures("short_request_budget")
def test_a_dripping_discovery_document_is_cut_off_at_the_request_path_budget(drip_server):
    server = drip_server(body_bytes=40, interval=0.2)

    with pytest.raises(InvalidRequest) as caught:
        fetch_discovery(server.url("/.well-known/openid-configuration"))

    assert caught.value.code == "oidc_discovery_failed"
    assert server.wait_until_done()
    assert not server.sent_everything


def test_a_jwks_host_is_tried_on_two_addresses_at_most(local_server, fake_dns, rsa_key, monkeypatch):
    server = local_server()  # listens on 127.0.0.1 only
    server.respond("/jwks", json_body={"keys": [rsa_key.public_jwk]})
    fake_dns["idp.test"] = [["127.0.0.2", "127.0.0.3", "127.0.0.1"]]
    attempts: list[str] = []
    create_connection = outbound.urllib3_connection.create_connection

    def recording(address, *args, **kwargs):
        attempts.append(address[0])
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(outbound.urllib3_connection, "create_connection", recording)

    with pytest.raises(TokenInvalid) as caught:
        JwksKeySource(f"http://idp.test:{server.port}/jwks").key_for(rsa_key.kid)

    assert caught.value.reason == TokenFailure.JWKS_UNAVAILABLE
    assert attempts == ["127.0.0.2", "127.0.0.3"]
    assert server.count() == 0
