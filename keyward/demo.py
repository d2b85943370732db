"""The dev-mode demo org that `scripts/run` seeds, so a new user gets a credential in one curl.

Demo org `demo` with: an owner account, the built-in dev IdP, an agent `invoice-bot`, a
`keyward_jwt` provider `stripe` offering `charges:read`, and a policy allowing it.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from keyward.accounts.models import Account, Role
from keyward.agents.models import Agent
from keyward.agents.services import register_agent
from keyward.audit.writer import Actor
from keyward.config import dev_secret, new_secret_key
from keyward.idp.dev import ensure_dev_idp
from keyward.policies.models import Effect, Policy
from keyward.policies.services import create_policy
from keyward.providers.models import Provider, ProviderKind
from keyward.providers.services import create_provider
from keyward.tenancy.models import Org

DEMO_ORG_SLUG = "demo"
DEMO_OWNER_EMAIL = "owner@demo.keyward.local"
DEMO_AGENT = "invoice-bot"
DEMO_PROVIDER = "stripe"
DEMO_SCOPE = "charges:read"


@dataclass(frozen=True)
class Demo:
    org: Org
    owner: Account
    owner_password: str
    agent: Agent
    provider: Provider


@transaction.atomic
def seed_demo() -> Demo:
    """Create whatever of the demo is missing; running it again changes nothing."""
    password = dev_secret(settings.VAR_DIR, "demo_owner_password", new_secret_key)
    org, _ = Org.objects.get_or_create(slug=DEMO_ORG_SLUG, defaults={"name": "Demo Org"})
    owner = Account.objects.filter(email=DEMO_OWNER_EMAIL).first()
    if owner is None:
        owner = Account.objects.create_account(email=DEMO_OWNER_EMAIL, password=password, org=org, role=Role.OWNER)
    ensure_dev_idp(org)
    seeder = Actor.system("seed_demo")
    agent = (
        Agent.objects.filter(org=org, name=DEMO_AGENT).first()
        or register_agent(
            org=org,
            name=DEMO_AGENT,
            actor=seeder,
            description="Demo agent that reads Stripe charges",
            grants=[{"provider": DEMO_PROVIDER, "scopes": [DEMO_SCOPE], "environments": ["prod"]}],
        ).agent
    )
    provider = Provider.objects.filter(org=org, name=DEMO_PROVIDER).first() or create_provider(
        org=org, name=DEMO_PROVIDER, kind=ProviderKind.KEYWARD_JWT, actor=seeder, scopes=[DEMO_SCOPE]
    )
    if not Policy.objects.filter(org=org, agent=DEMO_AGENT, provider=DEMO_PROVIDER).exists():
        create_policy(
            org=org, effect=Effect.ALLOW, agent=DEMO_AGENT, provider=DEMO_PROVIDER, scope=DEMO_SCOPE, actor=seeder
        )
    return Demo(org=org, owner=owner, owner_password=password, agent=agent, provider=provider)
