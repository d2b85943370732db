"""The dev-mode demo org that `scripts/run` seeds, so a new user has something to poke at."""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from keyward.accounts.models import Account, Role
from keyward.config import dev_secret, new_secret_key
from keyward.idp.dev import ensure_dev_idp
from keyward.tenancy.models import Org

DEMO_ORG_SLUG = "demo"
DEMO_OWNER_EMAIL = "owner@demo.keyward.local"


@dataclass(frozen=True)
class Demo:
    org: Org
    owner: Account
    owner_password: str


@transaction.atomic
def seed_demo() -> Demo:
    """Create the demo org and its owner if missing; running it again changes nothing."""
    password = dev_secret(settings.VAR_DIR, "demo_owner_password", new_secret_key)
    org, _ = Org.objects.get_or_create(slug=DEMO_ORG_SLUG, defaults={"name": "Demo Org"})
    owner = Account.objects.filter(email=DEMO_OWNER_EMAIL).first()
    if owner is None:
        owner = Account.objects.create_account(email=DEMO_OWNER_EMAIL, password=password, org=org, role=Role.OWNER)
    ensure_dev_idp(org)
    return Demo(org=org, owner=owner, owner_password=password)
