"""SSRF on every URL field: refused when saved, and refused again when keyward connects.

The URL fields are found by walking the live OpenAPI schema's request bodies, the models, and
each provider kind's config keys, so a new one cannot be missed: a field this file does not know
how to save (SAVES) or to make keyward connect to (CONNECTS) fails `test_every_url_field_is_known`.

Save time (production rules: https only, KEYWARD_ALLOW_PRIVATE_URLS off): loopback, RFC 1918,
link-local, cloud metadata and names resolving to them are refused with
`400 url_destination_not_allowed` naming the field, and nothing is stored. With the override on,
metadata and link-local stay refused.

Connect time: a name that resolved to a public address when saved resolves to 127.0.0.1 when
keyward connects (DNS rebinding). A real server listens there; it must receive nothing, and no
connection may even be attempted.
"""

import functools
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.apps import apps
from django.db import models
from rest_framework.test import APIClient

from keyward.approvals import notifications
from keyward.approvals.models import ApprovalWebhook
from keyward.idp.models import IdpConnector, IdpKind
from keyward.net import outbound
from keyward.outbox.models import OutboxMessage
from keyward.policies.models import Effect, Policy
from keyward.providers import kinds
from keyward.providers import services as provider_services
from keyward.siem.models import SiemCursor
from tests.broker.conftest import World
from tests.broker.minters.setups import app_private_key_pem, give_grant
from tests.factories import make_account, make_session_token
from tests.jose.tokens import SigningKey
from tests.security.expect import Baseline, refused, token_refusal_chain
from tests.security.rows import org_rows
from tests.security.tenants import request_properties, schema_operations

pytestmark = pytest.mark.django_db

URL_NAME = re.compile(r"(^|_)(url|uri)$")
PUBLIC_ADDRESS = "93.184.216.34"  # what `.test` names resolve to when saved; never connected to
FAKE_ADDRESSES = {"internal.test": "10.1.2.3", "metadata.test": "169.254.169.254", "loopback.test": "127.0.0.1"}
REFUSED_ALWAYS = [
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://169.254.10.10/",
    "https://[fe80::1]/",
    "https://[::ffff:169.254.169.254]/",
]
REFUSED_WITHOUT_OVERRIDE = [
    "https://127.0.0.1/",
    "https://localhost/",
    "https://[::1]/",
    "https://10.0.0.8/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://[fd12:3456::1]/",
    "https://[::ffff:10.0.0.1]/",
    "https://internal.test/",
    "https://loopback.test/",
    "https://metadata.test/",  # with the override on, names are left to the connect-time check
    *REFUSED_ALWAYS,
]

GITHUB = {"app_id": 1234, "installation_id": 99}
OAUTH = {"client_id": "keyward-agents"}
AWS = {
    "role_arn": "arn:aws:iam::123456789012:role/agents",
    "region": "eu-west-1",
    "scope_policies": {"s3:read": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
}
AWS_KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
PROVIDER_CONFIG = {
    ("github_app", "api_url"): (GITHUB, app_private_key_pem),
    ("oauth2_client_credentials", "token_url"): (OAUTH, lambda: "client-secret-value"),
    ("oauth2_token_exchange", "token_url"): (OAUTH, lambda: "client-secret-value"),
    ("aws_sts", "endpoint_url"): (AWS, lambda: AWS_KEYS),
}


# --- finding every URL field ----------------------------------------------------------------


def provider_config_url_keys() -> set[tuple[str, str]]:
    """(kind, key) for every URL-named config key a provider kind accepts, read from the kind's own rules."""
    accepted: dict[str, set[str]] = {}

    class Listed(Exception):
        pass

    for kind, rules in kinds.KIND_RULES.items():

        def record(config, allowed, kind=kind):
            accepted[kind] = set(allowed)
            raise Listed

        with mock.patch.object(kinds, "_no_unknown_keys", side_effect=record), pytest.raises(Listed):
            rules.config({}, "probe")
    return {(kind, key) for kind, keys in accepted.items() for key in keys if URL_NAME.search(key)}


def url_fields_in_requests() -> set[tuple[str, str]]:
    """(route, field) for every URL-named request field; provider `config` expands to each kind's URL keys."""
    found = set()
    for method, path, operation in schema_operations():
        properties = request_properties(operation)
        route = f"{method.upper()} {path}"
        found |= {(route, name) for name in properties if URL_NAME.search(name)}
        if "config" in properties and path.startswith("/v1/secrets"):
            found |= {(route, f"config.{kind}.{key}") for kind, key in provider_config_url_keys()}
    return found


def url_fields_in_models() -> set[tuple[str, str]]:
    found = set()
    for model in apps.get_models():
        if not model.__module__.startswith(("keyward.", "broker.")):
            continue
        for field in model._meta.get_fields():
            if isinstance(field, models.CharField | models.TextField) and URL_NAME.search(field.name):
                found.add((model._meta.label, field.name))
    return found


# --- saving a URL through the admin API ----------------------------------------------------


@dataclass
class Admin:
    """An org's owner, with a connector, an agent and one provider of each URL-holding kind to change."""

    world: World
    client: APIClient
    connector_id: int

    @property
    def org(self):
        return self.world.org

    def provider_name(self, kind: str) -> str:
        return f"existing-{kind.replace('_', '-')}"


def _provider_body(kind: str, key: str, url: str) -> dict:
    base, secret = PROVIDER_CONFIG[(kind, key)]
    return {"config": {**base, key: url}, "secret": secret()}


def _save_provider(route: str, kind: str, key: str) -> Callable[[Admin, str], object]:
    def save(admin: Admin, url: str):
        body = _provider_body(kind, key, url)
        name = admin.provider_name(kind)
        if route == "POST /v1/secrets":
            return admin.client.post("/v1/secrets", {"name": "new-provider", "kind": kind, **body}, format="json")
        if route == "PATCH /v1/secrets/{name}":
            return admin.client.patch(f"/v1/secrets/{name}", {"config": body["config"]}, format="json")
        return admin.client.post(f"/v1/secrets/{name}/rotate", body, format="json")

    return save


def _connector_body(field: str, url: str) -> dict:
    body = {
        "name": "corp",
        "issuer": "https://corp.test",
        "audience": "keyward-broker",
        "allowed_algorithms": ["RS256"],
    }
    return {**body, field: url}


SAVES: dict[tuple[str, str], tuple[Callable[[Admin, str], object], str]] = {
    ("POST /v1/idps", "jwks_uri"): (
        lambda admin, url: admin.client.post("/v1/idps", _connector_body("jwks_uri", url), format="json"),
        "jwks_uri",
    ),
    ("POST /v1/idps", "discovery_url"): (
        lambda admin, url: admin.client.post("/v1/idps", _connector_body("discovery_url", url), format="json"),
        "discovery_url",
    ),
    ("PATCH /v1/idps/{id}", "jwks_uri"): (
        lambda admin, url: admin.client.patch(f"/v1/idps/{admin.connector_id}", {"jwks_uri": url}, format="json"),
        "jwks_uri",
    ),
    ("PATCH /v1/idps/{id}", "discovery_url"): (
        lambda admin, url: admin.client.patch(f"/v1/idps/{admin.connector_id}", {"discovery_url": url}, format="json"),
        "discovery_url",
    ),
    ("POST /v1/agents", "attestation_jwks_uri"): (
        lambda admin, url: admin.client.post(
            "/v1/agents",
            {
                "name": admin.world.agent.name,  # an existing agent: registration updates it
                "attestation_required": True,
                "attestation_issuer": "https://ci.test",
                "attestation_audience": "keyward",
                "attestation_jwks_uri": url,
            },
            format="json",
        ),
        "attestation_jwks_uri",
    ),
    ("PUT /v1/approvals/webhook", "url"): (
        lambda admin, url: admin.client.put(
            "/v1/approvals/webhook", {"url": url, "secret": "webhook-secret-0123456789"}, format="json"
        ),
        "url",
    ),
    ("PUT /v1/siem", "url"): (
        lambda admin, url: admin.client.put(
            "/v1/siem", {"url": url, "secret": "siem-secret-0123456789abcdef-0123456789"}, format="json"
        ),
        "url",
    ),
}
for _route in ("POST /v1/secrets", "PATCH /v1/secrets/{name}", "POST /v1/secrets/{name}/rotate"):
    for _kind, _key in PROVIDER_CONFIG:
        SAVES[(_route, f"config.{_kind}.{_key}")] = (_save_provider(_route, _kind, _key), "config")

# Model fields holding a URL, and the request field that sets them (tested above).
MODEL_FIELDS = {
    ("idp.IdpConnector", "jwks_uri"): ("POST /v1/idps", "jwks_uri"),
    ("idp.IdpConnector", "discovery_url"): ("POST /v1/idps", "discovery_url"),
    ("agents.Agent", "attestation_jwks_uri"): ("POST /v1/agents", "attestation_jwks_uri"),
}


@pytest.fixture
def fake_addresses(fake_dns):
    fake_dns.update({name: [[address]] for name, address in FAKE_ADDRESSES.items()})
    fake_dns.update({name: [[PUBLIC_ADDRESS]] for name in ("corp.test", "ci.test", "api.test")})
    return fake_dns


@pytest.fixture
def admin(world, fake_addresses) -> Admin:
    """Created under dev rules (its URLs are names under .test that resolve to a public address)."""
    connector = IdpConnector.objects.create(
        org=world.org,
        name="existing",
        kind=IdpKind.OIDC,
        issuer="https://existing.test",
        audience="keyward-broker",
        jwks_uri="https://api.test/jwks",
        allowed_algorithms=["RS256"],
    )
    for kind, key in PROVIDER_CONFIG:
        body = _provider_body(kind, key, "https://api.test/")
        provider_services.create_provider(org=world.org, name=f"existing-{kind.replace('_', '-')}", kind=kind, **body)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, 'owner'))}")
    return Admin(world=world, client=client, connector_id=connector.pk)


def test_every_url_field_is_known():
    """A URL field this file cannot save and connect to is an untested SSRF path: teach SAVES and CONNECTS."""
    requests = url_fields_in_requests()
    assert requests == set(SAVES), (
        f"new URL fields: {sorted(requests - set(SAVES))}; gone: {sorted(set(SAVES) - requests)}"
    )
    in_models = url_fields_in_models()
    assert in_models == set(MODEL_FIELDS), f"model URL fields: {sorted(in_models ^ set(MODEL_FIELDS))}"
    assert set(MODEL_FIELDS.values()) <= set(SAVES)
    connected = {connect_case_for(route, field) for route, field in SAVES}
    assert connected == set(CONNECTS), f"fields without a connect-time test: {sorted(connected ^ set(CONNECTS))}"


@pytest.mark.parametrize("field", sorted(SAVES), ids=[f"{route} {field}" for route, field in sorted(SAVES)])
def test_a_private_destination_is_refused_at_save_time(admin, settings, field, subtests):
    save, error_field = SAVES[field]
    before = org_rows(admin.org)
    for allow_private, urls in ((False, REFUSED_WITHOUT_OVERRIDE), (True, REFUSED_ALWAYS)):
        settings.DEV_MODE, settings.KEYWARD_ALLOW_PRIVATE_URLS = False, allow_private
        for url in urls:
            with subtests.test(url=url, allow_private=allow_private):
                response = save(admin, url)
                assert response.status_code == 400, (response.status_code, response.content[:300])
                assert response.json()["error"] == "url_destination_not_allowed", response.json()
                assert list(response.json()["fields"]) == [error_field]
    assert org_rows(admin.org) == before, "a refused URL was stored (or audited as a change)"


# --- connect time ---------------------------------------------------------------------------


@pytest.fixture
def rebinding(monkeypatch, loopback_only, settings) -> None:
    """`.test` names answer a public address, except to the connection keyward is opening: 127.0.0.1."""
    settings.DEV_MODE, settings.KEYWARD_ALLOW_PRIVATE_URLS = True, False  # plain http, but no private addresses
    connecting = threading.local()
    real_getaddrinfo, real_new_conn = socket.getaddrinfo, outbound._GuardedConnectionMixin._new_conn

    def new_conn(self):
        connecting.now = True
        try:
            return real_new_conn(self)
        finally:
            connecting.now = False

    def getaddrinfo(host, port, *args, **kwargs):
        name = (host.decode() if isinstance(host, bytes) else str(host)).rstrip(".")
        if not name.endswith(".test"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        address = "127.0.0.1" if getattr(connecting, "now", False) else PUBLIC_ADDRESS
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(outbound._GuardedConnectionMixin, "_new_conn", new_conn)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@dataclass
class Victim:
    """The internal service on 127.0.0.1 the rebinding name points at."""

    server: object

    def url(self, path: str) -> str:
        return f"http://rebind.test:{self.server.port}{path}"


@pytest.fixture
def victim(local_server) -> Victim:
    server = local_server()
    for path in ("/jwks", "/hook", "/siem", "/oauth/token", "/"):
        server.respond(path, json_body={"keys": [], "access_token": "x", "token_type": "Bearer"})
    return Victim(server)


def _owner_client(world: World) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(make_account(world.org, 'owner'))}")
    return client


@functools.cache
def _rsa_key() -> SigningKey:
    """The key of an IdP or CI issuer keyward never gets to fetch: any key will do, one per run."""
    return SigningKey("k1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _connect_jwks_uri(world: World, victim: Victim, capture) -> None:
    client = _owner_client(world)
    saved = client.post(
        "/v1/idps", {**_connector_body("jwks_uri", victim.url("/jwks")), "issuer": "https://corp.test"}, format="json"
    )
    assert saved.status_code == 201, saved.content
    now = int(time.time())
    token = _rsa_key().sign(
        {"iss": "https://corp.test", "aud": "keyward-broker", "sub": "a", "iat": now, "exp": now + 60}
    )
    before = Baseline.take()
    row = refused(
        world.ask(token=token), 401, "invalid_user_token", before=before, chain=token_refusal_chain(world.org)
    )
    assert row.detail["verification"] == "jwks_unavailable"


def _connect_discovery_url(world: World, victim: Victim, capture) -> None:
    client = _owner_client(world)
    before = org_rows(world.org)
    response = client.post(
        "/v1/idps", _connector_body("discovery_url", victim.url("/.well-known/openid-configuration")), format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "oidc_discovery_failed"
    assert "url_destination_not_allowed" in response.json()["message"] or "private" in response.json()["message"]
    assert org_rows(world.org) == before


def _connect_attestation_jwks_uri(world: World, victim: Victim, capture) -> None:
    saved = _owner_client(world).post(
        "/v1/agents",
        {
            "name": world.agent.name,
            "attestation_required": True,
            "attestation_issuer": "https://ci.test",
            "attestation_audience": "keyward",
            "attestation_algorithms": ["RS256"],
            "attestation_jwks_uri": victim.url("/jwks"),
        },
        format="json",
    )
    assert saved.status_code == 200, saved.content
    now = int(time.time())
    assertion = _rsa_key().sign({"iss": "https://ci.test", "aud": "keyward", "sub": "ci", "iat": now, "exp": now + 60})
    before = Baseline.take()
    row = refused(world.ask(assertion=assertion), 403, "agent_attestation_required", before=before, chain=world.org)
    assert row.detail["attestation"] == "jwks_unavailable"


def _connect_webhook_url(world: World, victim: Victim, capture) -> None:
    saved = _owner_client(world).put(
        "/v1/approvals/webhook", {"url": victim.url("/hook"), "secret": "webhook-secret-0123456789"}, format="json"
    )
    assert saved.status_code == 200, saved.content
    Policy.objects.create(org=world.org, provider="stripe", scope="charges:write", effect=Effect.REQUIRE_APPROVAL)
    with capture(execute=True):
        parked = world.ask({"provider": "stripe", "scope": "charges:write"})
    assert parked.status_code == 202, parked.content
    message = OutboxMessage.objects.get(org=world.org, kind=notifications.WEBHOOK)
    assert message.status == "parked"
    assert message.last_error == "blocked:url_destination_not_allowed"
    assert ApprovalWebhook.objects.filter(org=world.org).exists()


def _connect_siem_url(world: World, victim: Victim, capture) -> None:
    with capture(execute=True):
        saved = _owner_client(world).put(
            "/v1/siem", {"url": victim.url("/siem"), "secret": "siem-secret-0123456789abcdef-0123456789"}, format="json"
        )
    assert saved.status_code == 200, saved.content
    cursor = SiemCursor.objects.get(chain=f"org:{world.org.pk}")
    assert (cursor.state, cursor.last_error) == ("parked", "blocked:url_destination_not_allowed")


def _connect_provider(kind: str, key: str):
    def connect(world: World, victim: Victim, capture) -> None:
        base, secret = PROVIDER_CONFIG[(kind, key)]
        path = "/oauth/token" if key == "token_url" else "/"
        saved = _owner_client(world).post(
            "/v1/secrets",
            {"name": "upstream", "kind": kind, "config": {**base, key: victim.url(path)}, "secret": secret()},
            format="json",
        )
        assert saved.status_code == 201, saved.content
        give_grant(world, "upstream")
        scope = {"github_app": "contents:read", "aws_sts": "s3:read"}.get(kind, "invoices:read")
        before = Baseline.take()
        row = refused(
            world.ask({"provider": "upstream", "scope": scope}),
            502,
            "native_mint_failed",
            before=before,
            chain=world.org,
        )
        assert row.detail["upstream_error"] == "url_destination_not_allowed"

    return connect


CONNECTS = {
    "idp.jwks_uri": _connect_jwks_uri,
    "idp.discovery_url": _connect_discovery_url,
    "agent.attestation_jwks_uri": _connect_attestation_jwks_uri,
    "approval-webhook.url": _connect_webhook_url,
    "siem.url": _connect_siem_url,
    **{f"provider.{kind}.{key}": _connect_provider(kind, key) for kind, key in PROVIDER_CONFIG},
}
ROUTE_FIELD_CONNECTS = {
    ("POST /v1/idps", "jwks_uri"): "idp.jwks_uri",
    ("PATCH /v1/idps/{id}", "jwks_uri"): "idp.jwks_uri",
    ("POST /v1/idps", "discovery_url"): "idp.discovery_url",
    ("PATCH /v1/idps/{id}", "discovery_url"): "idp.discovery_url",
    ("POST /v1/agents", "attestation_jwks_uri"): "agent.attestation_jwks_uri",
    ("PUT /v1/approvals/webhook", "url"): "approval-webhook.url",
    ("PUT /v1/siem", "url"): "siem.url",
}


def connect_case_for(route: str, field: str) -> str | None:
    """Which connect-time test covers a saved field (a provider config key: the kind's minter)."""
    if field.startswith("config."):
        return "provider." + field.removeprefix("config.")
    return ROUTE_FIELD_CONNECTS.get((route, field))


@pytest.mark.parametrize("field", CONNECTS)
def test_a_name_rebound_to_a_private_address_is_refused_when_keyward_connects(
    world, rebinding, connection_attempts, victim, django_capture_on_commit_callbacks, field
):
    CONNECTS[field](world, victim, django_capture_on_commit_callbacks)

    assert victim.server.count() == 0, "the request reached the internal address"
    assert connection_attempts == [], f"keyward opened connections: {connection_attempts}"
