"""Rotate a provider's secret from the command line, reading the new secret from stdin."""

import sys

from django.core.management.base import BaseCommand, CommandError

from keyward.audit.writer import Actor, AuditContext
from keyward.core.exceptions import ServiceError
from keyward.providers import services
from keyward.providers.models import Provider


def _strip_one_newline(text: str) -> str:
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


class Command(BaseCommand):
    help = (
        "Seal a new version of a provider's secret, read from stdin (all of it, minus one trailing newline). "
        "For static providers, stdin is a JSON object mapping each scope to its secret. Prints the new "
        "version and fingerprint, never the secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the org's slug")
        parser.add_argument("--provider", required=True, help="the provider's name")

    def handle(self, *args, org: str, provider: str, **options):
        found = Provider.objects.select_related("org").filter(org__slug=org, name=provider).first()
        if found is None:
            raise CommandError(f"No provider {provider!r} in an org with slug {org!r}.")
        secret = _strip_one_newline(sys.stdin.read())
        if not secret:
            raise CommandError("The secret on stdin is empty.")
        try:
            rotated = services.rotate_secret(
                found,
                secret=secret,
                actor=Actor.system("manage.py rotate_secret"),
                audit_context=AuditContext.current(),
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Rotated {rotated.name} (org {org}): version {rotated.secret_version}, "
                f"fingerprint {rotated.current_fingerprint}."
            )
        )
