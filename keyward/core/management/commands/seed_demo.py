"""Seed the dev-mode demo org and print how to use it. Refuses outside dev mode."""

import json
import shlex

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keyward.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or reuse) the demo org and print the console address and ready-to-run curl commands."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://localhost:8000")

    def handle(self, *args, base_url: str, **options):
        if not settings.DEV_MODE:
            raise CommandError("seed_demo only runs in dev mode (KEYWARD_DEV_MODE=1).")
        demo = seed_demo()
        login_body = json.dumps({"email": demo.owner.email, "password": demo.owner_password})
        pick_field = "python3 -c 'import sys, json; print(json.load(sys.stdin)[\"token\"])'"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"keyward (dev mode) is starting on {base_url}",
                    f"  API docs:  {base_url}/v1/schema",
                    f"  demo org:  {demo.org.slug}   owner: {demo.owner.email}   password: {demo.owner_password}",
                    "",
                    "Sign in as the demo owner and look yourself up:",
                    f"  TOKEN=$(curl -s -X POST {base_url}/auth/login -H 'Content-Type: application/json' \\",
                    f"          -d {shlex.quote(login_body)} | {pick_field})",
                    f'  curl -s {base_url}/auth/me -H "Authorization: Bearer $TOKEN"',
                    "",
                    "An end-user identity token from the demo org's built-in dev IdP:",
                    f"  python manage.py issue_user_token --org {demo.org.slug} --sub alice@example.com --ttl 1h",
                    "",
                ]
            )
        )
