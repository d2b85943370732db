"""One function per provider kind: a fake provider on 127.0.0.1 and a keyward provider pointing at it."""

import functools
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from keyward.providers import services
from keyward.providers.models import Provider
from tests.broker.conftest import World, allow
from tests.broker.minters.stubs import FakeGitHub, FakeTokenEndpoint, StubServer, verify_keyward_jwt
from tests.factories import make_rsa_private_key_pem

APP_ID = 1234
INSTALLATION_ID = 99
CLIENT_ID = "keyward-agents"
# Has the characters client_secret_basic must form-encode (RFC 6749 §2.3.1): a naive client breaks on ':'.
CLIENT_SECRET = "cs_9fK2:q/+ &=Zt7xV1LrP0"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
OAUTH_SCOPES = {"invoices:read", "invoices:write", "reports:read"}


@functools.cache
def app_private_key_pem() -> str:
    """One RSA key for the whole run: generating one per test would only slow the suite down."""
    return make_rsa_private_key_pem()


def give_grant(world: World, provider: str) -> None:
    world.agent.grants = [*world.agent.grants, {"provider": provider, "scopes": ["*"], "environments": ["prod"]}]
    world.agent.save()
    allow(world.org, provider=provider)


@dataclass
class GitHubSetup:
    fake: FakeGitHub
    server: StubServer
    provider: Provider
    pem: str

    def ask(self, world: World, scope: str = "contents:read", ttl: str = "5m", **kwargs):
        return world.ask({"provider": "github", "scope": scope, "ttl": ttl}, **kwargs)


def github_app(world: World, stubs, *, granted: dict[str, str] | None = None, **config) -> GitHubSetup:
    pem = app_private_key_pem()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    fake = FakeGitHub(
        app_id=APP_ID,
        installation_id=INSTALLATION_ID,
        public_key=key.public_key(),
        granted=granted or {"contents": "write", "issues": "write", "pull_requests": "read", "metadata": "read"},
    )
    server = stubs.start(fake)
    provider = services.create_provider(
        org=world.org,
        name="github",
        kind="github_app",
        config={"app_id": APP_ID, "installation_id": INSTALLATION_ID, "api_url": server.url(), **config},
        secret=pem,
    )
    give_grant(world, "github")
    return GitHubSetup(fake, server, provider, pem)


@dataclass
class OAuthSetup:
    fake: FakeTokenEndpoint
    server: StubServer
    provider: Provider
    name: str
    jwks: dict = field(default_factory=dict)  # keyward's published keys, as the provider would have fetched them
    subject_tokens: list[str] = field(default_factory=list)
    actor_claims: list[dict] = field(default_factory=list)
    actor_headers: list[dict] = field(default_factory=list)

    @property
    def token_url(self) -> str:
        return self.server.url("/oauth/token")

    def ask(self, world: World, scope: str = "invoices:read", ttl: str = "5m", **kwargs):
        return world.ask({"provider": self.name, "scope": scope, "ttl": ttl}, **kwargs)


def oauth2_client_credentials(world: World, stubs, *, auth_method: str = "client_secret_basic", **config) -> OAuthSetup:
    fake = FakeTokenEndpoint(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        auth_method=auth_method,
        grant_type=GRANT_CLIENT_CREDENTIALS,
        scopes=OAUTH_SCOPES,
    )
    server = stubs.start(fake)
    provider = services.create_provider(
        org=world.org,
        name="billing-api",
        kind="oauth2_client_credentials",
        config={"token_url": server.url("/oauth/token"), "client_id": CLIENT_ID, "auth_method": auth_method, **config},
        secret=CLIENT_SECRET,
    )
    give_grant(world, "billing-api")
    return OAuthSetup(fake, server, provider, "billing-api")


def oauth2_token_exchange(world: World, stubs, *, auth_method: str = "client_secret_post", **config) -> OAuthSetup:
    """A token-exchange endpoint that verifies the subject token is the user's and the actor token keyward's."""
    fake = FakeTokenEndpoint(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        auth_method=auth_method,
        grant_type=GRANT_TOKEN_EXCHANGE,
        scopes=OAUTH_SCOPES,
    )
    server = stubs.start(fake)
    provider = services.create_provider(
        org=world.org,
        name="downstream",
        kind="oauth2_token_exchange",
        config={"token_url": server.url("/oauth/token"), "client_id": CLIENT_ID, "auth_method": auth_method, **config},
        secret=CLIENT_SECRET,
    )
    setup = OAuthSetup(fake, server, provider, "downstream")
    fake.check = functools.partial(_check_exchange, setup)
    give_grant(world, "downstream")
    setup.jwks = world.client.get("/v1/jwks").json()
    return setup


def _check_exchange(setup: OAuthSetup, form: dict[str, str]) -> str | None:
    """RFC 8693 §2.1-2.2 as a provider applies them; an OAuth error code when the request is wrong."""
    if form.get("subject_token_type") != JWT_TYPE or form.get("actor_token_type") != JWT_TYPE:
        return "invalid_request"
    if form.get("subject_token") not in setup.subject_tokens:
        return "invalid_grant"
    verified = verify_keyward_jwt(form.get("actor_token", ""), setup.jwks)
    if verified is None:
        return "invalid_request"
    header, claims = verified
    setup.actor_headers.append(header)
    setup.actor_claims.append(claims)
    if claims.get("iss") != settings.KEYWARD_ISSUER or claims.get("aud") != setup.token_url:
        return "invalid_request"
    if not claims["iat"] <= claims["exp"] <= claims["iat"] + 300:
        return "invalid_request"
    config = setup.provider.config
    if form.get("requested_token_type") != config.get("requested_token_type", ACCESS_TOKEN_TYPE):
        return "invalid_request"
    for name in ("audience", "resource"):
        if form.get(name) != config.get(name):
            return "invalid_target"
    return None
