"""Token-type confusion: each of keyward's five token kinds presented where another is expected.

The kinds: the end user's identity token, a keyward credential, a delegation token, an agent's
attestation assertion and the token-exchange actor token. The places: the broker's Authorization
header, X-Keyward-Delegation, X-Keyward-Agent-Assertion and POST /v1/introspect. Every mismatch is
refused; where an admin has configured a place to trust keyward's own issuer and keys (an IdP
connector or attestation issuer pointing at keyward), keyward's `typ` headers alone refuse them.
"""

import time
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from broker.callers import delegation_audience
from broker.registry import create_introspection_key
from keyward.idp import services as idp_services
from keyward.providers import services as provider_services
from tests.broker.conftest import World, make_agent
from tests.broker.minters import setups
from tests.jose.tokens import SigningKey
from tests.local_http import LocalServer
from tests.security.expect import Baseline, nothing_issued, refused, token_refusal_chain
from tests.security.forge import split

pytestmark = pytest.mark.django_db

KINDS = ("user", "credential", "delegation", "assertion", "actor")
PLACES = {"authorization": "user", "delegation": "delegation", "assertion": "assertion", "introspection": "credential"}
KEYWARD_TYPED = ("credential", "delegation", "actor")
SUB_AGENT, ATTESTED_AGENT = "sub-bot", "attested-bot"
CI_ISSUER, CI_AUDIENCE = "https://token.actions.example.com", "keyward-attestation"


@pytest.fixture(scope="module")
def ci_key() -> SigningKey:
    return SigningKey("ci-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class Kit:
    world: World
    tokens: dict[str, str]
    keys_server: LocalServer  # serves keyward's own JWKS, for the "trusting" configurations
    introspection_key: str

    def present(self, place: str, token: str):
        world = self.world
        if place == "authorization":
            return world.ask(token=token)
        if place == "delegation":
            return world.ask(agent=SUB_AGENT, token=None, delegation=token)
        if place == "assertion":
            return world.ask(agent=ATTESTED_AGENT, assertion=token)
        return world.client.post(
            "/v1/introspect", {"token": token}, format="json", HTTP_AUTHORIZATION=f"Bearer {self.introspection_key}"
        )

    def assert_refused(self, place: str, response, before: Baseline):
        """The refusal of each place; returns the audit row's verification detail (None for introspection)."""
        org = self.world.org
        if place == "introspection":
            assert response.status_code == 200, response.content
            assert response.json() == {"active": False}
            nothing_issued(before, response.json())
            return None
        if place == "authorization":
            row = refused(response, 401, "invalid_user_token", before=before, chain=token_refusal_chain(org))
            return row.detail["verification"]
        if place == "delegation":
            row = refused(response, 401, "invalid_delegation", before=before, chain=token_refusal_chain(org))
            return row.detail["verification"]
        row = refused(response, 403, "agent_attestation_required", before=before, chain=org)
        return row.detail["attestation"]


@pytest.fixture
def kit(world, stubs, local_server, loopback_only, ci_key) -> Kit:
    """One token of each kind, all genuine, and the places configured to accept their own kind."""
    make_agent(world.org, SUB_AGENT)
    exchange = setups.oauth2_token_exchange(world, stubs)
    user_token = world.user_token()
    exchange.subject_tokens.append(user_token)
    assert exchange.ask(world, token=user_token).status_code == 200
    issued = world.ask().json()

    ci_server = local_server()
    ci_server.respond("/jwks", json_body={"keys": [ci_key.public_jwk]})
    make_agent(
        world.org,
        ATTESTED_AGENT,
        attestation_required=True,
        attestation_issuer=CI_ISSUER,
        attestation_jwks_uri=ci_server.url("/jwks"),
        attestation_audience=CI_AUDIENCE,
        attestation_algorithms=["RS256"],
    )
    now = int(time.time())
    assertion = ci_key.sign({"iss": CI_ISSUER, "aud": CI_AUDIENCE, "sub": "repo:acme/x", "iat": now, "exp": now + 300})

    keys_server = local_server()
    keys_server.respond("/jwks", json_body=world.client.get("/v1/jwks").json())
    tokens = {
        "user": world.user_token(),
        "credential": issued["credential"],
        "delegation": issued["delegation"]["token"],
        "assertion": assertion,
        "actor": exchange.fake.forms[-1]["actor_token"],
    }
    key = create_introspection_key(world.org, name="resource-server").key
    return Kit(world=world, tokens=tokens, keys_server=keys_server, introspection_key=key)


@pytest.mark.parametrize("place", PLACES)
def test_each_place_accepts_its_own_kind(kit, place):
    """The control: every token below is genuine, so each refusal is the type mismatch's doing."""
    response = kit.present(place, kit.tokens[PLACES[place]])
    assert response.status_code == 200, response.content
    assert "credential" in response.json() if place != "introspection" else response.json()["active"] is True


@pytest.mark.parametrize("place", PLACES)
def test_a_token_of_another_kind_is_refused(kit, place, subtests):
    for kind in KINDS:
        if kind == PLACES[place]:
            continue
        with subtests.test(kind=kind):
            before = Baseline.take()
            kit.assert_refused(place, kit.present(place, kit.tokens[kind]), before)


def _trust_keyward_as_an_idp(kit: Kit, audience: str) -> None:
    """An admin configures keyward itself as the org's IdP, for exactly this token's audience."""
    idp_services.create_connector(
        org=kit.world.org,
        name=f"keyward-as-idp-{abs(hash(audience))}",
        issuer=settings.KEYWARD_ISSUER,
        audience=audience,
        jwks_uri=kit.keys_server.url("/jwks"),
        allowed_algorithms=["ES256"],
    )


def _trust_keyward_for_attestation(kit: Kit, audience: str) -> None:
    agent = kit.world.org.agents.get(name=ATTESTED_AGENT)
    agent.attestation_issuer = settings.KEYWARD_ISSUER
    agent.attestation_jwks_uri = kit.keys_server.url("/jwks")
    agent.attestation_audience = audience
    agent.attestation_algorithms = ["ES256"]
    agent.save()


@pytest.mark.parametrize("place", ["authorization", "assertion"])
def test_keywards_own_tokens_are_refused_by_type_where_keywards_keys_are_trusted(kit, place, subtests):
    """Issuer, audience, key and signature all check out: only the `typ` header stops the token."""
    for kind in KEYWARD_TYPED:
        with subtests.test(kind=kind):
            token = kit.tokens[kind]
            audience = split(token)[1]["aud"]
            if place == "authorization":
                _trust_keyward_as_an_idp(kit, audience)
            else:
                _trust_keyward_for_attestation(kit, audience)
            before = Baseline.take()

            failure = kit.assert_refused(place, kit.present(place, token), before)

            assert failure == "wrong_type"


def test_a_credential_whose_audience_is_the_brokers_is_still_no_delegation_token(kit):
    """A provider configured with the delegation audience mints credentials that look like one, but for `typ`."""
    world = kit.world
    provider_services.update_provider(world.provider, config={"audience": delegation_audience()})
    credential = world.ask().json()["credential"]
    assert split(credential)[1]["aud"] == delegation_audience()
    before = Baseline.take()

    assert kit.assert_refused("delegation", kit.present("delegation", credential), before) == "wrong_type"
