"""Print an end-user token from an org's built-in dev IdP (dev mode only)."""

import re

from django.core.management.base import BaseCommand, CommandError

from keyward.core.exceptions import ServiceError
from keyward.idp.dev import DEV_MAX_TTL_SECONDS, issue_dev_user_token
from keyward.tenancy.models import Org

_TTL = re.compile(r"^(\d+)([smh]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_ttl(text: str) -> int:
    match = _TTL.match(text.strip())
    if not match:
        raise CommandError(f"--ttl must look like 90s, 5m, 1h or a number of seconds (got {text!r})")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 1 <= seconds <= DEV_MAX_TTL_SECONDS:
        raise CommandError("--ttl must be between 1 second and 24 hours")
    return seconds


class Command(BaseCommand):
    help = "Print an end-user identity token signed by the org's dev IdP (dev mode only)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="org slug")
        parser.add_argument("--sub", required=True, help="the end user, e.g. alice@example.com")
        parser.add_argument("--ttl", default="1h", help="lifetime: 90s, 5m, 1h or seconds (default 1h)")

    def handle(self, *args, org: str, sub: str, ttl: str, **options):
        found = Org.objects.filter(slug=org).first()
        if found is None:
            raise CommandError(f"No org with slug {org!r}.")
        try:
            token = issue_dev_user_token(found, subject=sub, ttl_seconds=parse_ttl(ttl))
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(token)
