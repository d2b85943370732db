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


def _read_secret() -> str:
    """All of stdin minus one trailing newline. Refuses a closed stdin or a terminal (typing would echo the
    secret, and a silent wait for end-of-file looks like a hang), blank input, and bytes that are not UTF-8."""
    if sys.stdin is None or sys.stdin.isatty():
        raise CommandError("rotate_secret reads the new secret from stdin: pipe it in (e.g. `< new-secret.txt`).")
    try:
        secret = _strip_one_newline(sys.stdin.read())
        secret.encode()  # a C-locale stdin passes bad bytes on as lone surrogates
    except UnicodeError:
        raise CommandError("The secret on stdin is not UTF-8 text.") from None
    if not secret.strip():
        raise CommandError("The secret on stdin is empty.")
    return secret


class Command(BaseCommand):
    help = (
        "Seal a new version of a provider's secret, read from stdin (all of it, minus one trailing newline). "
        "For static providers, stdin is a JSON object mapping each scope to its secret. Prints the new "
        "version and fingerprint, never the secret. The current secret again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the org's slug")
        parser.add_argument("--provider", required=True, help="the provider's name")

    def handle(self, *args, org: str, provider: str, **options):
        named = Provider.objects.select_related("org").filter(org__slug=org, name=provider)
        found = services.providers_with_secret_metadata(named).first()
        if found is None:
            raise CommandError(f"No provider {provider!r} in an org with slug {org!r}.")
        secret = _read_secret()
        try:
            if services.holds_current_secret(found, secret):
                self.stdout.write(
                    f"Unchanged: {found.name} (org {org}) already holds this secret as version "
                    f"{found.secret_version}, fingerprint {found.current_fingerprint}."
                )
                return
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
