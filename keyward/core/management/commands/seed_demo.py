"""Seed the dev-mode demo org and print how to use it: sign-in details and a curl that gets a credential."""

import json
import shlex

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keyward.demo import DEMO_AGENT, DEMO_PROVIDER, DEMO_SCOPE, seed_demo
from keyward.idp.dev import issue_dev_user_token

DEMO_USER = "alice@example.com"
DEMO_TOKEN_TTL_SECONDS = 12 * 3600


class Command(BaseCommand):
    help = "Create (or reuse) the demo org and print the API address and ready-to-run curl commands."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://localhost:8000")

    def handle(self, *args, base_url: str, **options):
        if not settings.DEV_MODE:
            raise CommandError("seed_demo only runs in dev mode (KEYWARD_DEV_MODE=1).")
        demo = seed_demo()
        user_token = issue_dev_user_token(demo.org, subject=DEMO_USER, ttl_seconds=DEMO_TOKEN_TTL_SECONDS)
        credential_body = json.dumps({"provider": DEMO_PROVIDER, "scope": DEMO_SCOPE, "ttl": "5m"})
        login_body = json.dumps({"email": demo.owner.email, "password": demo.owner_password})
        pick_field = "python3 -c 'import sys, json; print(json.load(sys.stdin)[\"token\"])'"
        lines = [
            "",
            f"keyward (dev mode) is starting on {base_url}",
            f"  API docs:  {base_url}/v1/schema     JWKS: {base_url}/v1/jwks",
            f"  demo org:  {demo.org.slug}   owner: {demo.owner.email}   password: {demo.owner_password}",
            "",
            f"Get a credential: {DEMO_AGENT}, acting for {DEMO_USER} (a dev-IdP token valid 12 h), asks for",
            f"{DEMO_PROVIDER} {DEMO_SCOPE}:",
            f"  curl -s -X POST {base_url}/v1/credentials \\",
            f"       -H 'Authorization: Bearer {user_token}' \\",
            f"       -H 'X-Keyward-Agent: {DEMO_AGENT}' -H 'Content-Type: application/json' \\",
            f"       -d {shlex.quote(credential_body)}",
            "",
            "A fresh end-user token from the demo org's dev IdP:",
            f"  python manage.py issue_user_token --org {demo.org.slug} --sub {DEMO_USER} --ttl 1h",
            "",
            "Sign in as the demo owner (admin API):",
            f"  TOKEN=$(curl -s -X POST {base_url}/auth/login -H 'Content-Type: application/json' \\",
            f"          -d {shlex.quote(login_body)} | {pick_field})",
            f'  curl -s {base_url}/v1/issued -H "Authorization: Bearer $TOKEN"',
            "",
        ]
        self.stdout.write("\n".join(lines))
