"""A small world for broker tests: an org with a dev IdP, an agent, providers and policies."""

import json
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from keyward.agents.models import Agent
from keyward.audit.models import AuditEvent
from keyward.crypto.envelope import fingerprint
from keyward.crypto.signing import clear_key_cache
from keyward.idp.dev import issue_dev_user_token
from keyward.jose.jwks import clear_jwks_cache
from keyward.policies.models import Effect, Policy
from keyward.providers.models import Provider, ProviderKind, ProviderSecret
from keyward.tenancy.models import Org
from tests.factories import make_org


@pytest.fixture(autouse=True)
def _fresh_key_caches():
    clear_key_cache()
    clear_jwks_cache()
    yield
    clear_key_cache()
    clear_jwks_cache()


def make_agent(org: Org, name: str = "invoice-bot", *, grants=None, **fields) -> Agent:
    if grants is None:
        grants = [{"provider": "stripe", "scopes": ["charges:*", "refunds:read"], "environments": ["prod", "staging"]}]
    return Agent.objects.create(org=org, name=name, grants=grants, **fields)


def make_provider(org: Org, name: str = "stripe", *, kind=ProviderKind.KEYWARD_JWT, scopes=None, **fields) -> Provider:
    if scopes is None:
        scopes = ["charges:read", "charges:write", "refunds:read"]
    return Provider.objects.create(org=org, name=name, kind=kind, scopes=scopes, **fields)


def make_static_provider(org: Org, name: str, secrets_by_scope: dict[str, str]) -> Provider:
    provider = make_provider(org, name, kind=ProviderKind.STATIC, scopes=sorted(secrets_by_scope), secret_version=1)
    plaintext = json.dumps(secrets_by_scope).encode()
    secret = ProviderSecret(provider=provider, version=1, fingerprint=fingerprint(plaintext))
    secret.seal_secret(plaintext)
    secret.save()
    return provider


def allow(org: Org, **fields) -> Policy:
    return Policy.objects.create(org=org, effect=Effect.ALLOW, **fields)


@dataclass
class World:
    org: Org
    agent: Agent
    provider: Provider
    client: APIClient

    def user_token(self, sub: str = "alice@example.com", org: Org | None = None, ttl: int = 600) -> str:
        return issue_dev_user_token(org or self.org, subject=sub, ttl_seconds=ttl)

    def ask(
        self,
        body: dict | bytes | None = None,
        *,
        agent: str | None = "invoice-bot",
        token: str | None = "user",
        environment: str | None = None,
        delegation: str | None = None,
        assertion: str | None = None,
        idempotency_key: str | None = None,
        **extra_headers,
    ):
        headers = dict(extra_headers)
        if token == "user":
            token = self.user_token()
        if token is not None:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        if agent is not None:
            headers["HTTP_X_KEYWARD_AGENT"] = agent
        if environment is not None:
            headers["HTTP_X_KEYWARD_ENVIRONMENT"] = environment
        if delegation is not None:
            headers["HTTP_X_KEYWARD_DELEGATION"] = delegation
        if assertion is not None:
            headers["HTTP_X_KEYWARD_AGENT_ASSERTION"] = assertion
        if idempotency_key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        if body is None:
            body = {"provider": "stripe", "scope": "charges:read", "ttl": "5m"}
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/v1/credentials", payload, content_type="application/json", **headers)


@pytest.fixture
def world(db) -> World:
    org = make_org("Acme")
    world = World(org=org, agent=make_agent(org), provider=make_provider(org), client=APIClient())
    allow(org, provider="stripe")
    return world


def last_audit(event_type: str | None = None) -> AuditEvent:
    events = AuditEvent.objects.order_by("-id")
    if event_type:
        events = events.filter(event_type=event_type)
    return events.first()
