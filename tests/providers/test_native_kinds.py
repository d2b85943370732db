"""Save-time checks for the github_app and OAuth 2.0 kinds: config shape, the SSRF guard, the secret."""

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyward.audit.models import AuditEvent
from keyward.providers.models import Provider
from tests.factories import make_rsa_private_key_pem

pytestmark = pytest.mark.django_db

GITHUB = {"app_id": 1234, "installation_id": 99}
OAUTH = {"token_url": "https://auth.acme.test/oauth/token", "client_id": "keyward"}
CLIENT_SECRET = "cs_" + "k" * 30


@pytest.fixture(scope="module")
def pem() -> str:
    return make_rsa_private_key_pem()


def create(callers, **body):
    return callers.client("admin").post("/v1/secrets", body, format="json")


def test_github_app_config_is_normalised(callers, pem):
    response = create(
        callers,
        name="gh",
        kind="github_app",
        config={"app_id": "1234", "installation_id": "99", "repositories": ["api", "api", "web"]},
        secret=pem,
    )
    assert response.status_code == 201, response.content
    assert response.json()["config"] == {
        "app_id": 1234,
        "installation_id": 99,
        "api_url": "https://api.github.com",
        "repositories": ["api", "web"],
    }
    enterprise = create(
        callers,
        name="ghe",
        kind="github_app",
        config={"app_id": "Iv1.8a61f9b3a7aba766", "installation_id": 1, "api_url": "https://ghe.acme.test/api/v3/"},
        secret=pem,
    )
    assert enterprise.json()["config"]["api_url"] == "https://ghe.acme.test/api/v3"
    assert enterprise.json()["config"]["app_id"] == "Iv1.8a61f9b3a7aba766"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"app_id": 1234},
        {"app_id": 0, "installation_id": 99},
        {"app_id": True, "installation_id": 99},
        {"app_id": "12a", "installation_id": 99},
        {**GITHUB, "installation_id": -1},
        {**GITHUB, "installation_id": "9 9"},
        {**GITHUB, "api_url": "ftp://api.github.com"},
        {**GITHUB, "api_url": "https://169.254.169.254/latest"},
        {**GITHUB, "api_url": "https://user:pass@api.github.com"},
        {**GITHUB, "api_url": 7},
        {**GITHUB, "repositories": []},
        {**GITHUB, "repositories": "api"},
        {**GITHUB, "repositories": ["acme/api"]},
        {**GITHUB, "permissions_map": {"ship": {"contents": "owner"}}},
        {**GITHUB, "permissions_map": {"ship": {"Contents": "read"}}},
        {**GITHUB, "permissions_map": {"ship:*": {"contents": "read"}}},
        {**GITHUB, "permissions_map": {"ship": {}}},
        {**GITHUB, "permissions_map": ["ship"]},
        {**GITHUB, "private_key": "x"},
    ],
)
def test_bad_github_app_configs_are_refused(callers, pem, config):
    response = create(callers, name="gh", kind="github_app", config=config, secret=pem)
    assert response.status_code == 400, config
    assert "config" in response.json()["fields"]
    assert not Provider.objects.exists()


def test_the_ssrf_guard_names_the_field(callers, pem):
    response = create(
        callers,
        name="gh",
        kind="github_app",
        config={**GITHUB, "api_url": "https://169.254.169.254/"},
        secret=pem,
    )
    body = response.json()
    assert body["error"] == "url_destination_not_allowed"
    assert body["fields"]["config"][0].startswith("config.api_url:")


def _pem(key, *, encryption=None) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    "secret",
    [
        "not a key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        pytest.param("ec", id="an EC key"),
        pytest.param("small", id="a 1024-bit RSA key"),
        pytest.param("encrypted", id="an encrypted RSA key"),
        pytest.param("public", id="a public key"),
    ],
)
def test_the_github_secret_must_be_an_unencrypted_rsa_private_key(callers, secret):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    secret = {
        "ec": lambda: _pem(ec.generate_private_key(ec.SECP256R1())),
        "small": lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - refused
        "encrypted": lambda: _pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"passphrase")),
        "public": lambda: (
            rsa_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        ),
    }.get(secret, lambda: secret)()
    response = create(callers, name="gh", kind="github_app", config=GITHUB, secret=secret)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_secret"
    body_lines = [line for line in secret.splitlines() if len(line) > 20]
    assert all(line not in response.content.decode() for line in body_lines)
    assert not AuditEvent.objects.filter(event_type__startswith="provider.").exists()


@pytest.mark.parametrize("kind", ["oauth2_client_credentials", "oauth2_token_exchange"])
def test_oauth2_config_defaults_to_client_secret_basic(callers, kind):
    response = create(callers, name="api", kind=kind, config={**OAUTH, "audience": "billing"}, secret=CLIENT_SECRET)
    assert response.status_code == 201, response.content
    expected = {**OAUTH, "audience": "billing", "auth_method": "client_secret_basic"}
    if kind == "oauth2_token_exchange":
        expected["requested_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
    assert response.json()["config"] == expected


@pytest.mark.parametrize("kind", ["oauth2_client_credentials", "oauth2_token_exchange"])
@pytest.mark.parametrize(
    "config",
    [
        {"client_id": "keyward"},
        {**OAUTH, "token_url": "https://10.0.0.1.nip.io@evil.test/token"},
        {**OAUTH, "token_url": "http://[fe80::1]/token"},
        {**OAUTH, "token_url": "https://metadata.google.internal#/token"},
        {"token_url": OAUTH["token_url"]},
        {**OAUTH, "client_id": ""},
        {**OAUTH, "client_id": " keyward"},
        {**OAUTH, "client_id": "a\nb"},
        {**OAUTH, "auth_method": "private_key_jwt"},
        {**OAUTH, "audience": ""},
        {**OAUTH, "grant_type": "password"},
    ],
)
def test_bad_oauth2_configs_are_refused(callers, kind, config):
    response = create(callers, name="api", kind=kind, config=config, secret=CLIENT_SECRET)
    assert response.status_code == 400, config
    assert "config" in response.json()["fields"]


@pytest.mark.parametrize(
    "config",
    [
        {**OAUTH, "resource": "ledger"},
        {**OAUTH, "resource": "https://ledger.acme.test/#frag"},
        {**OAUTH, "requested_token_type": "access_token"},
        {**OAUTH, "requested_token_type": "urn:ietf:params:oauth:token-type:jwt with space"},
    ],
)
def test_bad_token_exchange_configs_are_refused(callers, config):
    response = create(callers, name="api", kind="oauth2_token_exchange", config=config, secret=CLIENT_SECRET)
    assert response.status_code == 400, config
    assert "config" in response.json()["fields"]


@pytest.mark.parametrize("secret", ["", "   ", "line\nbreak", "tab\there", 7, {"secret": "x"}, "x" * 4097])
def test_a_client_secret_is_one_line_of_printable_text(callers, secret):
    response = create(callers, name="api", kind="oauth2_client_credentials", config=OAUTH, secret=secret)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_secret"
    if isinstance(secret, str) and secret:
        assert secret not in json.dumps(response.json())


def test_moving_the_token_url_needs_the_secret_again(callers):
    """Otherwise an admin could point a stored client secret at a server of their own."""
    create(callers, name="api", kind="oauth2_client_credentials", config=OAUTH, secret="client-secret-1")
    client = callers.client("admin")
    moved = {**OAUTH, "token_url": "https://evil.example.com/token"}

    refused = client.patch("/v1/secrets/api", {"config": moved}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"] == "secret_required"
    assert "client-secret-1" not in refused.content.decode()

    harmless = client.patch(
        "/v1/secrets/api", {"config": {**OAUTH, "audience": "https://api.example.com"}}, format="json"
    )
    assert harmless.status_code == 200

    rotated = client.post("/v1/secrets/api/rotate", {"secret": "client-secret-2", "config": moved}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["config"]["token_url"] == "https://evil.example.com/token"
    assert rotated.json()["secret"]["version"] == 2
