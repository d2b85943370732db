"""The places keyward verifies a JWT, each with a token it accepts and the private key that signed it.

A `Target` presents a token where it belongs (the broker's Authorization header, its delegation and
assertion headers, the introspection endpoint), says whether it was accepted, and checks the
refusal the catalogue demands: the documented status and code, nothing issued, the audit row.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.registry import create_introspection_key
from keyward.crypto.signing import active_signing_key
from keyward.idp import services as idp_services
from keyward.idp.models import IdpConnector, IdpKind
from keyward.tenancy.models import Org
from tests.broker.conftest import World, make_agent
from tests.jose.tokens import SigningKey
from tests.local_http import LocalServer
from tests.security.expect import Baseline, nothing_issued, refused, token_refusal_chain

ATTESTATION_ISSUER = "https://token.actions.example.com"
ATTESTATION_AUDIENCE = "keyward-attestation"
OIDC_AUDIENCE = "keyward-broker"
SUB_AGENT = "sub-bot"


@dataclass
class Target:
    name: str
    world: World
    legit: str  # a token this place accepts
    key: SigningKey  # the private key that signed `legit`
    present: Callable[[str], object]
    accepted: Callable[[object], bool]
    assert_refused: Callable[[object, Baseline], None]
    jwks_server: LocalServer | None = None  # where the key comes from, when it is fetched over HTTP

    @property
    def public_key(self):
        return self.key.private.public_key()


def private_key_of_dev_idp(org: Org) -> SigningKey:
    connector = IdpConnector.objects.select_related("dev_key").get(org=org, kind=IdpKind.DEV)
    private = serialization.load_der_private_key(connector.dev_key.unseal_secret(), password=None)
    return SigningKey(connector.dev_key.kid, "ES256", private)


def keyward_signing_key() -> SigningKey:
    """keyward's active ES256 key, private half: what only keyward can sign with."""
    key = active_signing_key()
    return SigningKey(key.kid, "ES256", serialization.load_der_private_key(key.unseal_secret(), password=None))


def _broker_refusal(status: int, code: str, chain: Org | None) -> Callable[[object, Baseline], None]:
    def assert_refused(response, before: Baseline) -> None:
        refused(response, status, code, before=before, chain=chain)

    return assert_refused


def _issued(response) -> bool:
    return response.status_code == 200 and "credential" in response.json()


def user_token_target(world: World) -> Target:
    """The end user's identity token from the org's built-in dev IdP (ES256), in Authorization."""
    legit = world.user_token()
    return Target(
        name="user-token-dev-idp",
        world=world,
        legit=legit,
        key=private_key_of_dev_idp(world.org),
        present=lambda token: world.ask(token=token),
        accepted=_issued,
        assert_refused=_broker_refusal(401, "invalid_user_token", token_refusal_chain(world.org)),
    )


@dataclass
class JwksIdp:
    """A real OIDC IdP on 127.0.0.1 publishing one RSA key, as the org's connector points at it."""

    server: LocalServer
    key: SigningKey

    @property
    def issuer(self) -> str:
        return self.server.url("").rstrip("/")

    def publish(self) -> None:
        self.server.respond("/jwks", json_body={"keys": [self.key.public_jwk]})

    def token(self, **claims) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": OIDC_AUDIENCE, "sub": "alice@example.com", "iat": now, "exp": now + 300}
        return self.key.sign({**body, **claims})


def oidc_user_token_target(world: World, server: LocalServer, rsa_private: rsa.RSAPrivateKey) -> Target:
    """An end-user token from a real RS256 IdP whose JWKS keyward fetches over HTTP."""
    idp = JwksIdp(server, SigningKey("idp-rsa-1", "RS256", rsa_private))
    idp.publish()
    idp_services.create_connector(
        org=world.org,
        name="corporate-idp",
        issuer=idp.issuer,
        audience=OIDC_AUDIENCE,
        jwks_uri=server.url("/jwks"),
        allowed_algorithms=["RS256"],
    )
    return Target(
        name="user-token-oidc",
        world=world,
        legit=idp.token(),
        key=idp.key,
        present=lambda token: world.ask(token=token),
        accepted=_issued,
        assert_refused=_broker_refusal(401, "invalid_user_token", token_refusal_chain(world.org)),
        jwks_server=server,
    )


def delegation_target(world: World) -> Target:
    """A delegation token keyward issued, presented by a sub-agent in X-Keyward-Delegation."""
    make_agent(world.org, SUB_AGENT)
    legit = world.ask().json()["delegation"]["token"]
    return Target(
        name="delegation-token",
        world=world,
        legit=legit,
        key=keyward_signing_key(),
        present=lambda token: world.ask(agent=SUB_AGENT, token=None, delegation=token),
        accepted=_issued,
        assert_refused=_broker_refusal(401, "invalid_delegation", token_refusal_chain(world.org)),
    )


def attestation_target(world: World, server: LocalServer, rsa_private: rsa.RSAPrivateKey) -> Target:
    """An agent that must prove where it runs with an RS256 assertion from its CI's OIDC issuer."""
    key = SigningKey("ci-1", "RS256", rsa_private)
    server.respond("/jwks", json_body={"keys": [key.public_jwk]})
    agent = world.agent
    agent.attestation_required = True
    agent.attestation_issuer = ATTESTATION_ISSUER
    agent.attestation_jwks_uri = server.url("/jwks")
    agent.attestation_audience = ATTESTATION_AUDIENCE
    agent.attestation_algorithms = ["RS256"]
    agent.save()
    now = int(time.time())
    legit = key.sign(
        {
            "iss": ATTESTATION_ISSUER,
            "aud": ATTESTATION_AUDIENCE,
            "sub": "repo:acme/billing",
            "iat": now,
            "exp": now + 300,
        }
    )
    return Target(
        name="attestation-assertion",
        world=world,
        legit=legit,
        key=key,
        present=lambda token: world.ask(assertion=token),
        accepted=_issued,
        assert_refused=_broker_refusal(403, "agent_attestation_required", world.org),
        jwks_server=server,
    )


def introspection_target(world: World) -> Target:
    """A keyward credential, checked by a resource server at POST /v1/introspect."""
    legit = world.ask().json()["credential"]
    key = create_introspection_key(world.org, name="resource-server").key

    def present(token: str):
        return world.client.post("/v1/introspect", {"token": token}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}")

    def assert_refused(response, before: Baseline) -> None:
        assert response.status_code == 200, response.content
        assert response.json() == {"active": False}
        nothing_issued(before, response.json())

    return Target(
        name="introspection",
        world=world,
        legit=legit,
        key=keyward_signing_key(),
        present=present,
        accepted=lambda response: response.status_code == 200 and response.json().get("active") is True,
        assert_refused=assert_refused,
    )
