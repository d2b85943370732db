"""Seed the database scripts/schemathesis fuzzes, and print the credentials it runs with as JSON.

Only for that run: an org `fuzz` whose owner's session authenticates the admin routes, with an
agent, providers, policies, an IdP connector and an issued credential so detail routes have
objects; an end-user token from the org's dev IdP for POST /v1/credentials; and an introspection
key of a second org `fuzz-resource-server`, so the fuzzer (acting as `fuzz`'s owner) can never
delete the key that authenticates POST /v1/introspect.
"""

import json
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keyward.settings")
django.setup()

from django.db import transaction  # noqa: E402

from broker import pipeline, registry  # noqa: E402
from keyward.accounts.models import Account, Role  # noqa: E402
from keyward.accounts.services import start_session  # noqa: E402
from keyward.agents.services import register_agent  # noqa: E402
from keyward.audit.writer import Actor  # noqa: E402
from keyward.idp.dev import issue_dev_user_token  # noqa: E402
from keyward.idp.services import create_connector  # noqa: E402
from keyward.policies.services import create_policy  # noqa: E402
from keyward.providers.services import create_provider  # noqa: E402
from keyward.tenancy.models import Org  # noqa: E402

AGENT, PROVIDER, SCOPE = "invoice-bot", "stripe", "charges:read"
END_USER = "alice@example.com"


@transaction.atomic
def seed_objects() -> tuple[Org, Account, str]:
    org = Org.objects.create(name="Fuzz Org", slug="fuzz")
    owner = Account.objects.create_account(
        email="owner@fuzz.example.com", password=os.urandom(24).hex(), org=org, role=Role.OWNER
    )
    Account.objects.create_account(
        email="viewer@fuzz.example.com", password=os.urandom(24).hex(), org=org, role=Role.VIEWER
    )
    seeder = Actor.system("schemathesis_seed")
    register_agent(
        org=org,
        name=AGENT,
        actor=seeder,
        grants=[{"provider": PROVIDER, "scopes": ["charges:*"], "environments": ["*"]}],
    )
    create_provider(org=org, name=PROVIDER, kind="keyward_jwt", actor=seeder, scopes=["charges:*"])
    create_provider(org=org, name="vault", kind="static", actor=seeder, secret={"kv:read": "s3cr3t-value"})
    create_policy(org=org, effect="allow", agent=AGENT, provider=PROVIDER, scope=SCOPE, actor=seeder)
    create_policy(org=org, effect="require_approval", provider=PROVIDER, scope="charges:write", actor=seeder)
    create_connector(
        org=org,
        actor=seeder,
        name="corp",
        issuer="https://idp.fuzz.example.com",
        audience="keyward",
        jwks_uri="http://127.0.0.1:9/jwks",  # never fetched: no token of this issuer is ever sent
        allowed_algorithms=["RS256"],
        email_domains=["fuzz.example.com"],
    )
    resource_server = Org.objects.create(name="Fuzz Resource Server", slug="fuzz-resource-server")
    introspection_key = registry.create_introspection_key(resource_server, name="fuzz", actor=seeder).key
    return org, owner, introspection_key


def issue_one_credential(user_token: str) -> None:
    """A real issued credential (and its audit rows), through the broker as an agent would ask."""
    from django.test import RequestFactory

    request = RequestFactory().post(
        "/v1/credentials",
        data=json.dumps({"provider": PROVIDER, "scope": SCOPE}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {user_token}", "X-Keyward-Agent": AGENT},
    )
    answer = pipeline.handle(request)
    if answer.status != 200:
        raise SystemExit(f"seeding could not issue a credential: {answer.status} {answer.body}")


def main() -> None:
    org, owner, introspection_key = seed_objects()
    user_token = issue_dev_user_token(org, subject=END_USER, email=END_USER, ttl_seconds=6 * 3600)
    issue_one_credential(user_token)
    session = start_session(owner, ip="127.0.0.1", otp_verified=False).token
    print(json.dumps({"session": session, "user_token": user_token, "introspection_key": introspection_key}))


if __name__ == "__main__":
    main()
